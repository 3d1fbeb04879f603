import { dataSuite } from './suite.js';
import { diskTarget } from './targets.js';

dataSuite(diskTarget);
