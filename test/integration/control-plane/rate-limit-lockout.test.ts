/**
 * Nobody can lock an agent out of the token endpoint (issue 14 item 6):
 * failed authentications are counted per claimed client id and address, and
 * the per-client quota only counts requests that authenticated. In process,
 * and with the counters shared in Redis.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { RedisFeedPublisher } from '../../../src/control-plane/feed/index.js'
import { silentLogger } from '../../../src/observability/logger.js'
import { REDIS_URL, redisPrefix, skipWithoutRedis } from '../../helpers/services.js'
import { basic, form, seedAgent, startControlPlane, type Harness } from './harness.js'

const LIMITS = { perClient: 5, authFailuresPerClientIp: 3, perIp: 1_000_000, windowSeconds: 3600 }

for (const backend of ['in-process', 'redis'] as const) {
  describe(`token endpoint limits cannot be spent by someone else (${backend})`, { skip: backend === 'redis' ? await skipWithoutRedis() : false }, () => {
    let h: Harness
    let feed: RedisFeedPublisher | undefined

    before(async () => {
      if (backend === 'redis') feed = await RedisFeedPublisher.open({ url: REDIS_URL, logger: silentLogger(), prefix: redisPrefix() })
      h = await startControlPlane({
        overrides: { rateLimit: LIMITS, ...(backend === 'redis' ? { redisUrl: REDIS_URL } : {}) },
        ...(feed ? { deps: { feed } } : {}),
      })
    })
    after(async () => {
      await h?.close()
      await feed?.close()
    })

    const mint = (clientId: string, secret: string) =>
      form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(clientId, secret) })

    test("many wrong-secret attempts from the agent's own address, then the real agent still gets its token", async () => {
      const s = await seedAgent(h, { tenant: 'victim', cred: { ttl_seconds: 3600, single_use: false } })
      const codes: number[] = []
      for (let i = 0; i < 40; i++) codes.push((await mint(s.clientId, `wrong-${i}`)).status)
      assert.deepEqual(codes.slice(0, 3), [401, 401, 401], 'failures up to the limit are invalid_client')
      assert.ok(
        codes.slice(3).every((c) => c === 429),
        'past it, this client id from this address gets 429',
      )
      const failed = (await h.events('auth.failed')).filter((e) => e.subject === s.clientId)
      assert.equal(failed.length, 3, 'failures past the limit write no audit events')

      const real = await mint(s.clientId, s.secret)
      assert.equal(real.status, 200, real.text)
      assert.ok(real.body.access_token)
    })

    test('the per-client quota counts authenticated requests only', async () => {
      const s = await seedAgent(h, { tenant: 'quota', cred: { ttl_seconds: 3600, single_use: false } })
      for (let i = 0; i < 10; i++) await mint(s.clientId, 'not-the-secret')
      const codes: number[] = []
      for (let i = 0; i < LIMITS.perClient + 1; i++) codes.push((await mint(s.clientId, s.secret)).status)
      assert.deepEqual(codes, [200, 200, 200, 200, 200, 429])
    })
  })
}
