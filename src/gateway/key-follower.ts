import type { KeysState } from '../control-plane/index.js'
import type { Logger } from '../observability/logger.js'
import type { JwksClient } from '../verify/index.js'

/**
 * Makes a key change announced on the feed (`keys` event, or the keys of a
 * snapshot) take effect at once (issue 14): for every announced kid this
 * gateway does not hold, the JWKS is refetched now, whatever the unknown-kid
 * cooldown, and again with a short backoff (25 ms doubling to 1 s) while a
 * control plane that has not reloaded yet serves the old set, for at most
 * `timeoutMs`. Kids that no longer appear are left to the deny list (a
 * revoked kid is refused by its `kid` revocation) and the scheduled refetch.
 */
export class KeyFollower {
  private readonly wanted = new Set<string>()
  private running: Promise<void> | undefined
  private closed = false
  private wake: (() => void) | undefined

  constructor(
    private readonly jwks: JwksClient,
    private readonly logger: Logger,
    private readonly timeoutMs = 10_000,
  ) {}

  /** Kids still awaited (tests). */
  get pending(): number {
    return this.wanted.size
  }

  announce(keys: KeysState): void {
    if (this.closed) return
    for (const kid of keys.kids) if (this.jwks.getKey(kid) === undefined) this.wanted.add(kid)
    if (this.wanted.size === 0) return
    this.wake?.()
    this.running ??= this.run().finally(() => {
      this.running = undefined
    })
  }

  private async run(): Promise<void> {
    const started = Date.now()
    let delay = 25
    while (this.wanted.size > 0 && !this.closed) {
      // A fetch already in flight may predate the change: the loop fetches again if it did.
      await this.jwks.refresh()
      for (const kid of [...this.wanted]) if (this.jwks.getKey(kid) !== undefined) this.wanted.delete(kid)
      if (this.wanted.size === 0 || this.closed) break
      if (Date.now() - started > this.timeoutMs) {
        this.logger.warn({ kids: [...this.wanted] }, "announced keys not in the control plane's JWKS; leaving them to the scheduled refresh")
        this.wanted.clear()
        break
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, delay)
        function done(): void {
          clearTimeout(t)
          resolve()
        }
        this.wake = done
      })
      this.wake = undefined
      delay = Math.min(1_000, delay * 2)
    }
  }

  async close(): Promise<void> {
    this.closed = true
    this.wake?.()
    await this.running
  }
}
