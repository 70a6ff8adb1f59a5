import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Redis } from 'ioredis'
import { ManualClock } from '../../../src/lib/clock.js'
import { MemoryReplayCache } from '../../../src/store/memory/replay-cache.js'
import { RedisReplayCache } from '../../../src/store/redis/replay-cache.js'
import { REDIS_URL, redisPrefix, skipWithoutRedis } from '../../helpers/services.js'

describe('MemoryReplayCache', () => {
  test('a jti is claimed once until it expires', async () => {
    const clock = new ManualClock(1_000_000)
    const c = new MemoryReplayCache({ clock })
    assert.equal(await c.claim('a', 1060), true)
    assert.equal(await c.claim('a', 1060), false)
    assert.equal(await c.claim('b', 1060), true)
    clock.advance(61_000)
    assert.equal(await c.claim('a', 1200), true, 'after expiry the entry is gone')
    c.sweep()
    assert.equal(c.size, 1)
  })

  test('when full of live entries it refuses to record rather than evict one', async () => {
    const clock = new ManualClock(1_000_000)
    const c = new MemoryReplayCache({ clock, maxEntries: 2 })
    await c.claim('a', 2000)
    await c.claim('b', 1001)
    await assert.rejects(c.claim('c', 2000), /full/)
    clock.advance(2_000)
    assert.equal(await c.claim('c', 2000), true, 'expired entries make room')
    assert.equal(await c.claim('a', 2000), false, 'the live one is still held')
  })
})

describe('RedisReplayCache', { skip: await skipWithoutRedis() }, () => {
  test('exactly one of many concurrent claims wins (SET NX EXAT)', async () => {
    const redis = new Redis(REDIS_URL)
    const prefix = redisPrefix()
    const a = new RedisReplayCache(redis, { prefix })
    const exp = Math.floor(Date.now() / 1000) + 60
    try {
      const results = await Promise.all(Array.from({ length: 20 }, () => a.claim('jti-1', exp)))
      assert.equal(results.filter(Boolean).length, 1)
      const ttl = await redis.ttl(`${prefix}jti-1`)
      assert.ok(ttl > 0 && ttl <= 60, `expires with the token (ttl ${ttl})`)
    } finally {
      await redis.del(`${prefix}jti-1`)
      redis.disconnect()
    }
  })

  test('rejects at once when Redis is unreachable', async () => {
    const redis = new Redis('redis://127.0.0.1:1', { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true })
    redis.on('error', () => {})
    const c = new RedisReplayCache(redis, { ownsConnection: true })
    await assert.rejects(c.claim('x', Math.floor(Date.now() / 1000) + 60))
    await c.close()
  })
})
