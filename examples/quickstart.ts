/**
 * Quickstart: objects and refs on the memory backend. Run: npm run example
 */
import { hashBytes, memoryStore } from '../src/index.js';

const store = memoryStore();
const encode = (s: string): Uint8Array => new TextEncoder().encode(s);

// Objects are addressed by their hash; putting the same bytes twice is a no-op.
const v1 = await store.put(encode('first version'));
console.log('stored', v1.toString(), 'CID', v1.toCid());
console.log('same hash as computed locally:', v1.equals(hashBytes(encode('first version'))));

// Refs are mutable names with compare-and-swap: create only if absent...
console.log('create heads/main:', (await store.compareAndSwap('heads/main', null, v1)).ok);
// ...and advance only from the value we saw, so no update is ever lost.
const v2 = await store.put(encode('second version'));
console.log('advance from v1:', (await store.compareAndSwap('heads/main', v1, v2)).ok);
const stale = await store.compareAndSwap('heads/main', v1, v2);
console.log('advance from a stale value:', stale.ok, '- current is', stale.current?.hash.toString());

const head = await store.getRef('heads/main');
console.log('heads/main ->', new TextDecoder().decode(await store.get(head!.hash)));
await store.close();
