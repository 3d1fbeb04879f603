/**
 * Progress reports shared by the snapshot operations, so that one renderer
 * (the CLI's progress bar) can draw any of them.
 *
 * @module
 */

/** A progress report: work done so far, and the totals when known. */
export interface Progress {
  /** What is running: `snapshot`, `restore`, `verify`, `gc`, ... */
  readonly phase: string;
  /** Items done (files, objects). */
  readonly done: number;
  /** Items in all, when known. */
  readonly total?: number | undefined;
  /** Bytes done. */
  readonly bytes: number;
  /** Bytes in all, when known. */
  readonly totalBytes?: number | undefined;
}

/** Called with progress reports; may be called often, so keep it cheap. */
export type ProgressListener = (progress: Progress) => void;

/**
 * Runs `fn` over `items` with at most `limit` in flight, stopping new work
 * after the first failure and waiting for work already started before
 * rejecting, so that no call is left running behind the caller's back (a
 * restore must not write into a directory it is removing).
 */
export async function forEachLimit<T>(
  items: Iterable<T>,
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    for (;;) {
      if (failure !== undefined) return;
      const next = iterator.next();
      if (next.done === true) return;
      try {
        await fn(next.value);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, worker));
  if (failure !== undefined) throw failure.error;
}
