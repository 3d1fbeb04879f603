import { memoryStore } from '../../src/index.js';
import { conformanceSuite } from '../conformance.js';

conformanceSuite('memory', {
  setup: async () => memoryStore(),
});
