/**
 * Reporting keys that are not Cairn's. A bucket is shared ground: another
 * tool may write a ref body Cairn cannot read, or a key under `refs/` or
 * `objects/` that names no ref or hash. A listing skips such a key, so that
 * one foreign key never fails a listing for the whole store, and reports it
 * here: to the store's `onForeign` option, or by default as a process
 * warning (code `CAIRN_FOREIGN_KEY`), once per key.
 *
 * @module
 */
import type { ForeignEntry, ForeignListener } from './config.js';

/** Keys already warned about, per store; beyond this many, warnings repeat rather than grow memory. */
const WARNED_LIMIT = 10_000;

/** See the module comment. */
export class ForeignReporter {
  readonly #listener: ForeignListener | undefined;
  readonly #warned = new Set<string>();

  constructor(listener: ForeignListener | undefined) {
    this.#listener = listener;
  }

  report(entry: ForeignEntry): void {
    if (this.#listener !== undefined) {
      try {
        this.#listener(entry);
      } catch {
        // A throwing listener must not fail the listing it was told from.
      }
      return;
    }
    if (this.#warned.has(entry.key)) return;
    if (this.#warned.size >= WARNED_LIMIT) this.#warned.clear();
    this.#warned.add(entry.key);
    // JSON.stringify escapes control characters a hostile key may hold, and the key is cut short.
    const shown = JSON.stringify(entry.key.length > 200 ? `${entry.key.slice(0, 200)}...` : entry.key);
    process.emitWarning(`skipped S3 key ${shown} while listing ${entry.kind}s: ${entry.reason}`, { code: 'CAIRN_FOREIGN_KEY' });
  }
}
