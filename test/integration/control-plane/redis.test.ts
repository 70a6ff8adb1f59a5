import { test } from 'node:test'
import assert from 'node:assert/strict'
import { RedisFeedPublisher } from '../../../src/control-plane/feed/index.js'
import { silentLogger } from '../../../src/observability/logger.js'
import { REDIS_URL, redisPrefix, skipWithoutRedis } from '../../helpers/services.js'
import { basic, form, seedAgent, startControlPlane } from './harness.js'

const skip = await skipWithoutRedis()

test('with Redis the per-client rate limit is shared: the third request in the window gets 429', { skip }, async () => {
  // The feed gets its own prefix so this test never touches the shared aegis:feed channel.
  const feed = await RedisFeedPublisher.open({ url: REDIS_URL, logger: silentLogger(), prefix: redisPrefix() })
  const h = await startControlPlane({ overrides: { redisUrl: REDIS_URL, rateLimit: { perClient: 2, perIp: 1_000_000, windowSeconds: 3600 } }, deps: { feed } })
  try {
    const s = await seedAgent(h)
    const codes: number[] = []
    for (let i = 0; i < 3; i++)
      codes.push((await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(s.clientId, s.secret) })).status)
    assert.deepEqual(codes, [200, 200, 429])
  } finally {
    await h.close()
    await feed.close()
  }
})
