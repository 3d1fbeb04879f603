import { dataSuite } from './suite.js';
import { memoryTarget } from './targets.js';

dataSuite(memoryTarget);
