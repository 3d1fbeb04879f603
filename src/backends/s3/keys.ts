/**
 * The bucket layout, under the store's prefix:
 *
 * - `objects/<alg>/<first 2 hex>/<rest of hex>`: object bytes, as they are.
 * - `refs/<name>`: a ref body (see `ref-body.ts`).
 * - `tmp/<uuid>`: a streamed upload whose hash is not known yet; copied to
 *   its object key and removed. A crash can leave one behind: a lifecycle
 *   rule expiring `tmp/` after a day cleans those up.
 * - `.cairn/probe`: the conditional-write capability probe.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { Hash, isHashAlgorithm } from '../../hash.js';

/** Key builders and parsers for one prefix. */
export class KeyLayout {
  readonly objects: string;
  readonly refs: string;
  readonly probe: string;
  readonly #tmp: string;

  constructor(readonly prefix: string) {
    this.objects = `${prefix}objects/`;
    this.refs = `${prefix}refs/`;
    this.probe = `${prefix}.cairn/probe`;
    this.#tmp = `${prefix}tmp/`;
  }

  object(hash: Hash): string {
    return `${this.objects}${hash.algorithm}/${hash.hex.slice(0, 2)}/${hash.hex.slice(2)}`;
  }

  ref(name: string): string {
    return `${this.refs}${name}`;
  }

  tmp(): string {
    return `${this.#tmp}${randomUUID()}`;
  }

  /** The hash an object key names, or `undefined` for a key that is not one. */
  hashOf(key: string): Hash | undefined {
    if (!key.startsWith(this.objects)) return undefined;
    const [algorithm, shard, rest, extra] = key.slice(this.objects.length).split('/');
    if (extra !== undefined || !isHashAlgorithm(algorithm) || shard?.length !== 2 || rest === undefined) return undefined;
    let hash: Hash;
    try {
      hash = Hash.fromHex(algorithm, shard + rest);
    } catch {
      return undefined;
    }
    // Only the key this layout would write (lower-case hex): another spelling is another tool's key.
    return this.object(hash) === key ? hash : undefined;
  }
}
