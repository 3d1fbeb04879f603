/**
 * Catching up with what other processes appended is shared between
 * concurrent callers, but a caller must never join a run that began before
 * it called: that run may have read the file before the caller's own view
 * was due. Such a caller waits for the running one to end and then shares
 * the next, so every caller sees the effect of a run that started after its
 * call.
 *
 * @module
 */

/** A shared catch-up: call it to run (or join) one; `settled()` waits until none is running or queued. */
export interface FreshCoalesced {
  (): Promise<void>;
  /** Resolves once the running and queued runs have ended, whether they succeeded or not. */
  settled(): Promise<void>;
}

/** Wraps `work` into a function with that sharing rule. */
export function freshCoalescer(work: () => Promise<void>): FreshCoalesced {
  let running: Promise<void> | undefined;
  let queued: Promise<void> | undefined;
  const call = (): Promise<void> => {
    if (queued !== undefined) return queued;
    if (running !== undefined) {
      const next = running
        .catch(() => {})
        .then(() => {
          queued = undefined;
          return call();
        });
      queued = next;
      return next;
    }
    const run = work().finally(() => {
      if (running === run) running = undefined;
    });
    running = run;
    return run;
  };
  return Object.assign(call, {
    settled: async (): Promise<void> => {
      while (queued !== undefined || running !== undefined) await (queued ?? running)!.catch(() => {});
    },
  });
}
