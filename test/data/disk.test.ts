import { dataSuite } from './suite.js';
import { diskTarget } from './targets.js';

dataSuite(diskTarget());
// Streams created in the generic layout (as before native logs, or with native: false) keep working on disk.
dataSuite(diskTarget('refs'), { streamsOnly: true });
