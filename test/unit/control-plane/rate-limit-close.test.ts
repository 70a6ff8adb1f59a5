import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { Redis } from 'ioredis'
import { RedisRateLimiter } from '../../../src/control-plane/token/rate-limit.js'
import { REDIS_URL, skipWithoutRedis } from '../../helpers/services.js'

/** A port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as { port: number }).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

/** Resolves 'end' once the client emits end, or 'still <status>' if it has not within 3 s. */
async function ended(redis: Redis): Promise<string> {
  if (redis.status === 'end') return 'end'
  let timer: NodeJS.Timeout | undefined
  const r = await Promise.race([
    new Promise<string>((resolve) => redis.once('end', () => resolve('end'))),
    new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`still ${redis.status}`), 3000)
    }),
  ])
  clearTimeout(timer)
  return r
}

// The limiter's own connection options (control-plane/token/routes.ts): no offline queue.
const OPTIONS = { enableOfflineQueue: false, commandTimeout: 250, maxRetriesPerRequest: 0, retryStrategy: () => 50 } as const

test('closing the Redis rate limiter while its connection is still reconnecting stops the reconnecting', async () => {
  const redis = new Redis(`redis://127.0.0.1:${await deadPort()}`, OPTIONS)
  redis.on('error', () => {})
  await new Promise<void>((resolve) => redis.once('reconnecting', () => resolve()))
  assert.notEqual(redis.status, 'ready')
  const limiter = new RedisRateLimiter(redis, 1000, () => Date.now())
  await limiter.close()
  // Reconnect attempts come every 50 ms; a closed client makes none (quit() used to be refused here, leaving it reconnecting).
  let attempts = 0
  redis.on('reconnecting', () => {
    attempts++
  })
  await new Promise((r) => setTimeout(r, 600))
  if (attempts > 0) redis.disconnect()
  assert.equal(attempts, 0)
})

test('closing the Redis rate limiter on a ready connection quits it', { skip: await skipWithoutRedis() }, async () => {
  const redis = new Redis(REDIS_URL, OPTIONS)
  await new Promise<void>((resolve) => redis.once('ready', () => resolve()))
  const limiter = new RedisRateLimiter(redis, 1000, () => Date.now(), `test:${process.pid}:`)
  assert.equal((await limiter.hit('k', 5)).ok, true)
  const end = ended(redis)
  await limiter.close()
  const r = await end
  if (r !== 'end') redis.disconnect()
  assert.equal(r, 'end')
})
