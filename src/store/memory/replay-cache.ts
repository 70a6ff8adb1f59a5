import type { ReplayCache } from '../replay-cache.js'
import type { Clock } from '../../lib/clock.js'
import { systemClock } from '../../lib/clock.js'

export interface MemoryReplayCacheOptions {
  /** Most jtis held at once; default 1,000,000. */
  maxEntries?: number
  clock?: Clock
}

/**
 * In-process single-use jti registry: bounded, each entry kept until its
 * `expiresAt`. Not shared between processes (the gateway logs that once).
 *
 * When full of live entries it refuses to record (rejects), rather than
 * evicting a live jti: eviction would let that token be replayed, and the
 * caller fails closed on a rejection.
 */
export class MemoryReplayCache implements ReplayCache {
  private readonly entries = new Map<string, number>()
  private readonly max: number
  private readonly clock: Clock

  constructor(options: MemoryReplayCacheOptions = {}) {
    this.max = options.maxEntries ?? 1_000_000
    this.clock = options.clock ?? systemClock
  }

  async claim(jti: string, expiresAt: number): Promise<boolean> {
    const now = this.clock.now() / 1000
    const held = this.entries.get(jti)
    if (held !== undefined && held > now) return false
    if (held === undefined && this.entries.size >= this.max) {
      this.sweep(now)
      if (this.entries.size >= this.max) throw new Error('replay cache full')
    }
    this.entries.set(jti, expiresAt)
    return true
  }

  /** Drops entries past their expiry (epoch seconds). */
  sweep(nowSeconds: number = this.clock.now() / 1000): void {
    for (const [jti, exp] of this.entries) if (exp <= nowSeconds) this.entries.delete(jti)
  }

  get size(): number {
    return this.entries.size
  }

  async close(): Promise<void> {
    this.entries.clear()
  }
}
