/**
 * Fixed-window rate limits for the token endpoint, per client id and per
 * client address. Hand-written rather than @fastify/rate-limit because one
 * request is counted under two keys, one of which (the client id) is only
 * known after the body was parsed, and the in-process path must stay
 * synchronous. In-process by default; Redis (one Lua call per request) when
 * configured, so every control plane shares the counters.
 */
import type { Redis } from 'ioredis'

export interface RateVerdict {
  ok: boolean
  /** Seconds until the window resets (for Retry-After). */
  retryAfter: number
}

export interface RateLimiter {
  /** Counts one hit under `key` against `limit`; resolves the verdict. */
  hit(key: string, limit: number): RateVerdict | Promise<RateVerdict>
  close(): Promise<void>
}

/** In-process counters; memory is bounded by dropping the previous window's map at each roll. */
export class MemoryRateLimiter implements RateLimiter {
  private window = -1
  private counts = new Map<string, number>()

  constructor(
    private readonly windowMs: number,
    private readonly now: () => number,
    private readonly maxKeys = 200_000,
  ) {}

  hit(key: string, limit: number): RateVerdict {
    const t = this.now()
    const w = Math.floor(t / this.windowMs)
    if (w !== this.window) {
      this.window = w
      this.counts = new Map()
    }
    const retryAfter = Math.max(1, Math.ceil(((w + 1) * this.windowMs - t) / 1000))
    const n = (this.counts.get(key) ?? 0) + 1
    // Past maxKeys new keys are not tracked (a flood of random keys must not grow memory); the per-IP limit still applies.
    if (n === 1 && this.counts.size >= this.maxKeys) return { ok: true, retryAfter }
    this.counts.set(key, n)
    return { ok: n <= limit, retryAfter }
  }

  async close(): Promise<void> {
    this.counts.clear()
  }
}

const SCRIPT = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`

/**
 * Shared counters in Redis: INCR + PEXPIRE on first hit, keyed by window
 * number. While Redis is unreachable it counts in process instead: the limit
 * protects capacity, it is not an authorization check, so token issuance
 * must not stop with Redis.
 */
export class RedisRateLimiter implements RateLimiter {
  private readonly fallback: MemoryRateLimiter

  constructor(
    private readonly redis: Redis,
    private readonly windowMs: number,
    private readonly now: () => number,
    private readonly prefix = '',
    private readonly onFallback?: (err: unknown) => void,
  ) {
    this.fallback = new MemoryRateLimiter(windowMs, now)
  }

  async hit(key: string, limit: number): Promise<RateVerdict> {
    const t = this.now()
    const w = Math.floor(t / this.windowMs)
    const retryAfter = Math.max(1, Math.ceil(((w + 1) * this.windowMs - t) / 1000))
    let n: number
    try {
      n = (await this.redis.eval(SCRIPT, 1, `${this.prefix}aegis:rl:${w}:${key}`, String(this.windowMs + 1000))) as number
    } catch (err) {
      this.onFallback?.(err)
      return this.fallback.hit(key, limit)
    }
    return { ok: n <= limit, retryAfter }
  }

  async close(): Promise<void> {
    // quit() needs a writable connection: without the offline queue it rejects while connecting or reconnecting,
    // and the client would keep reconnecting forever.
    if (this.redis.status !== 'ready') {
      this.redis.disconnect()
      return
    }
    await this.redis.quit().catch(() => {
      this.redis.disconnect()
    })
  }
}
