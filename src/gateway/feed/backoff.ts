/**
 * Exponential backoff with jitter for feed reconnects: the n-th retry waits
 * a random time in [d/2, d] where d = min(max, initial · 2^n), so a fleet of
 * gateways does not reconnect in lockstep after a control-plane restart.
 */
export class Backoff {
  private attempt = 0
  constructor(
    private readonly initialMs = 100,
    private readonly maxMs = 10_000,
  ) {}

  next(): number {
    const d = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30))
    this.attempt++
    return d / 2 + Math.random() * (d / 2)
  }

  reset(): void {
    this.attempt = 0
  }
}

/** Sleeps `ms` unless `signal` aborts first (resolves either way). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const t = setTimeout(done, ms)
    function done(): void {
      clearTimeout(t)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}
