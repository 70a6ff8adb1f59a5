/**
 * Two control planes on one PostgreSQL: an agent revoked through one gets no
 * token from the other, and a lift through the other lets the first issue
 * again. With Redis the feed carries it; without, each control plane's poll
 * of the revocation sequence does.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { RedisFeedPublisher } from '../../../src/control-plane/feed/index.js'
import { silentLogger } from '../../../src/observability/logger.js'
import { REDIS_URL, freshPostgresSchema, redisPrefix, skipWithoutPostgres, skipWithoutRedis } from '../../helpers/services.js'
import { eventually } from '../../helpers/gateway-env.js'
import { admin, basic, form, seedAgent, startControlPlane, type Harness } from './harness.js'

const pgSkip = await skipWithoutPostgres()
const redisSkip = await skipWithoutRedis()

for (const transport of ['redis', 'no-redis'] as const) {
  test(`an agent revoked on one control plane gets no token from the other; lifted on the other, the first issues again (${transport})`, {
    skip: pgSkip || (transport === 'redis' ? redisSkip : false),
  }, async () => {
    const schema = await freshPostgresSchema()
    const prefix = redisPrefix()
    const feeds =
      transport === 'redis'
        ? [
            await RedisFeedPublisher.open({ url: REDIS_URL, logger: silentLogger(), prefix }),
            await RedisFeedPublisher.open({ url: REDIS_URL, logger: silentLogger(), prefix }),
          ]
        : []
    const redis = transport === 'redis' ? { redisUrl: REDIS_URL } : {}
    let a: Harness | undefined
    let b: Harness | undefined
    try {
      a = await startControlPlane({ databaseUrl: schema.url, overrides: redis, ...(feeds[0] ? { deps: { feed: feeds[0] } } : {}) })
      b = await startControlPlane({
        databaseUrl: schema.url,
        overrides: { ...redis, kek: a.config.kek, adminToken: a.adminToken, gatewayToken: a.gatewayToken },
        ...(feeds[1] ? { deps: { feed: feeds[1] } } : {}),
      })
      const s = await seedAgent(a, { cred: { ttl_seconds: 600, single_use: false } })
      const mint = (h: Harness) => form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(s.clientId, s.secret) })
      assert.equal((await mint(b)).status, 200)

      const rev = await admin(a, a.adminToken, 'POST', '/revocations', { type: 'agent', value: s.agentId, tenant: s.tenant })
      assert.equal(rev.status, 201, rev.text)
      assert.equal((await mint(a)).status, 401, 'refused at once where it was recorded')
      await eventually(async () => (await mint(b!)).status === 401, 10_000, 20)
      // Once refused, refused for good (no flapping between cache and store).
      for (let i = 0; i < 5; i++) assert.equal((await mint(b)).status, 401)

      const lifted = await admin(b, b.adminToken, 'DELETE', `/revocations/${rev.body.seq}`)
      assert.equal(lifted.status, 200, lifted.text)
      assert.equal((await mint(b)).status, 200)
      await eventually(async () => (await mint(a!)).status === 200, 10_000, 20)
    } finally {
      await b?.close()
      await a?.close()
      for (const f of feeds) await f.close()
      await schema.drop()
    }
  })
}
