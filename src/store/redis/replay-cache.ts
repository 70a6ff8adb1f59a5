import type { Redis } from 'ioredis'
import type { ReplayCache } from '../replay-cache.js'

export interface RedisReplayCacheOptions {
  /** Key prefix; default `aegis:jti:`. Tests use a unique one. */
  prefix?: string
  /** Close the connection on close(); default false (the owner closes it). */
  ownsConnection?: boolean
}

/**
 * Single-use jti registry shared by every gateway on one Redis:
 * `SET <prefix><jti> 1 NX EXAT <expiresAt>` is atomic, so exactly one
 * gateway wins a claim. Rejects when Redis is unreachable; the connection
 * should be made with `enableOfflineQueue: false` and a `commandTimeout` so
 * that an outage rejects at once instead of queueing.
 */
export class RedisReplayCache implements ReplayCache {
  private readonly prefix: string

  constructor(
    private readonly redis: Redis,
    private readonly options: RedisReplayCacheOptions = {},
  ) {
    this.prefix = options.prefix ?? 'aegis:jti:'
  }

  async claim(jti: string, expiresAt: number): Promise<boolean> {
    const res = await this.redis.set(this.prefix + jti, '1', 'EXAT', Math.ceil(expiresAt), 'NX')
    return res === 'OK'
  }

  async close(): Promise<void> {
    if (this.options.ownsConnection) this.redis.disconnect()
  }
}
