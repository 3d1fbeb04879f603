/**
 * The writer registry: each open store registers itself as a writer
 * (`writers/<id>.json`, holding its pid and host) before it appends to
 * segments named after it. Other processes ask the registry whether a
 * writer is dead, which decides whether its segment's unparsed tail is a
 * torn write (dead: drop it) or one still in progress (alive: wait), and
 * sweep what dead writers left behind.
 *
 * @module
 */
import { constants } from 'node:fs';
import { lstat, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoOf, mapFsError } from './fs-errors.js';
import { READ_FLAGS } from './layout.js';
import { currentHolder, holderState, parseHolder } from './lock.js';

/** Liveness of the writers sharing one store directory, as seen from this process. */
export class WriterRegistry {
  readonly #root: string;
  readonly #self: string;
  readonly #dead = new Set<string>();
  readonly #alive = new Map<string, number>();

  constructor(root: string, self: string) {
    this.#root = root;
    this.#self = self;
  }

  /** Registers this process as writer `self` (the file must not exist yet). */
  async register(): Promise<void> {
    const file = this.#file(this.#self);
    await writeFile(file, JSON.stringify(currentHolder()), {
      flag: constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW,
    }).catch((error: unknown) => {
      throw mapFsError(error, `registering writer ${file}`);
    });
  }

  /** Removes this writer's registration (at close). */
  async unregister(): Promise<void> {
    await unlink(this.#file(this.#self)).catch(() => {});
  }

  /** True if `writer` has certainly stopped (its process is gone, or it never registered fully). */
  async isDead(writer: string): Promise<boolean> {
    if (writer === this.#self) return false;
    if (this.#dead.has(writer)) return true;
    // A live verdict is reused for a second: refreshes on lookup misses can be frequent.
    const checked = this.#alive.get(writer);
    if (checked !== undefined && Date.now() - checked < 1000) return false;
    let dead: boolean;
    const path = this.#file(writer);
    try {
      const holder = parseHolder(await readFile(path, { encoding: 'utf8', flag: READ_FLAGS }));
      if (holder === undefined) {
        // Empty or torn: either a writer between creating and filling its file, or one that died then.
        dead = Date.now() - (await lstat(path)).mtimeMs > 2000;
      } else {
        // Another host's writer cannot be checked: assume it lives, which only delays reclaiming its tail.
        dead = holderState(holder) === 'dead';
      }
    } catch (error) {
      if (errnoOf(error) !== 'ENOENT') throw mapFsError(error, `reading writers/${writer}.json`);
      dead = true;
    }
    if (dead) this.#dead.add(writer);
    else this.#alive.set(writer, Date.now());
    return dead;
  }

  /** Removes what writers that died left behind (kill -9): registration files, half-written temp files. */
  async sweep(): Promise<void> {
    const sweep = async (dir: string, pattern: RegExp): Promise<void> => {
      for (const name of await readdir(dir)) {
        const match = pattern.exec(name);
        if (match !== null && (await this.isDead(match[1]!))) await unlink(join(dir, name)).catch(() => {});
      }
    };
    await sweep(join(this.#root, 'writers'), /^([0-9a-f]{16})\.json$/);
    await sweep(join(this.#root, 'segments'), /^\.([0-9a-f]{16})-[0-9]{8}c\.seg\.tmp$/);
    await sweep(this.#root, /^index\.ckpt\.([0-9a-f]{16})\.tmp$/);
  }

  #file(writer: string): string {
    return join(this.#root, 'writers', `${writer}.json`);
  }
}
