import { ForwardingStore, memoryStore, UnsupportedError, type CasResult, type HashLike, type Store } from '../../src/index.js';
import type { AbortOptions } from '../../src/abort.js';
import { conformanceSuite } from '../conformance.js';

/** A second handle on the same store that leaves it open when closed. */
class PeerView extends ForwardingStore {
  override async close(): Promise<void> {}
}

conformanceSuite('memory', {
  setup: async () => memoryStore(),
  // A memory store's data has no other client than the object itself: the peer is a second handle on it.
  peer: async (store) => new PeerView(store, { name: 'peer view' }),
});

/**
 * A store that declares neither ref capability, as a backend on a server
 * without conditional DELETE would: the suite must skip what needs them and
 * check the refusal the contract asks for instead.
 */
class WithoutConditionalDelete extends ForwardingStore {
  constructor(inner: Store) {
    super(inner, { name: 'store without conditional delete', capabilities: { atomicRefs: false, conditionalDelete: false } });
  }

  override async compareAndSwap(name: string, expected: HashLike | null, next: HashLike | null, options?: AbortOptions): Promise<CasResult> {
    if (next === null) throw new UnsupportedError(`ref ${name} cannot be deleted by swap: this store has no conditional delete; use deleteRef`, { ref: name });
    return super.compareAndSwap(name, expected, next, options);
  }
}

conformanceSuite('memory without conditionalDelete and atomicRefs (capability gating)', {
  setup: async () => new WithoutConditionalDelete(memoryStore()),
  capabilities: { atomicRefs: false, conditionalDelete: false },
});
