import { memoryStore, type Store } from '../../src/index.js';
import { cached } from '../../src/layers/cached.js';
import { layered } from '../../src/layers/layered.js';
import { readOnly } from '../../src/layers/read-only.js';
import { conformanceSuite } from '../conformance.js';

conformanceSuite('cached over memory', {
  setup: async () => cached(memoryStore(), { maxBytes: 4 * 2 ** 20 }),
});

const inners = new WeakMap<Store, Store>();
conformanceSuite('readOnly over memory', {
  setup: async () => {
    const inner = memoryStore();
    const view = readOnly(inner);
    inners.set(view, inner);
    return view;
  },
  seed: (store) => inners.get(store)!,
});

conformanceSuite('layered memory over memory', {
  setup: async () => layered({ upper: memoryStore(), lower: memoryStore() }),
});
