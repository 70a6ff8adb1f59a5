/**
 * An agent, client or tenant revocation holds until an admin lifts it
 * (docs/reference.md "Revocation"), on both stores. Token lifetimes are short (60 s)
 * and time is an injected clock, so the moment the old entry would have
 * lapsed (now + max lifetime + skew) is passed inside the test.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { ManualClock } from '../../../src/lib/clock.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../../helpers/services.js'
import { admin, basic, form, seedAgent, startControlPlane, type Harness } from './harness.js'

const TOKENS = { defaultTtlSeconds: 60, maxTtlSeconds: 60, clockSkewSeconds: 5 }
/** Past the expiry the entry used to get: now + max lifetime + skew. */
const PAST_OLD_EXPIRY_MS = (TOKENS.maxTtlSeconds + TOKENS.clockSkewSeconds + 30) * 1000

const pgSkip = await skipWithoutPostgres()

for (const backend of ['sqlite', 'postgres'] as const) {
  describe(`revocations that hold until lifted (${backend})`, { skip: backend === 'postgres' ? pgSkip : false }, () => {
    let h: Harness
    let drop: (() => Promise<void>) | undefined
    const clock = new ManualClock(Date.now())

    before(async () => {
      let databaseUrl: string | undefined
      if (backend === 'postgres') {
        const schema = await freshPostgresSchema()
        databaseUrl = schema.url
        drop = schema.drop
      }
      h = await startControlPlane({ overrides: { tokens: TOKENS }, deps: { clock }, ...(databaseUrl ? { databaseUrl } : {}) })
    })
    after(async () => {
      await h?.close()
      await drop?.()
    })

    const mint = (c: { clientId: string; secret: string }) =>
      form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(c.clientId, c.secret) })
    const issuedTo = async (tenant: string, agentId: string): Promise<number> =>
      (await h.events('token.issued')).filter((e) => e.tenant === tenant && e.data.agent_id === agentId).length
    const introspect = async (token: string): Promise<Record<string, unknown>> =>
      (await form(h, '/oauth2/introspect', { token }, { authorization: `Bearer ${h.gatewayToken}` })).body as Record<string, unknown>

    test('a revoked agent gets no token, also once the old expiry has passed, until an admin lifts the entry', async () => {
      const s = await seedAgent(h, {
        tenant: `t-${backend}`,
        agent: 'leaky-bot',
        agentBody: { max_ttl_seconds: 60 },
        cred: { ttl_seconds: 3600, single_use: false },
      })
      const first = await mint(s)
      assert.equal(first.status, 200, first.text)
      const old = first.body.access_token as string

      const issuedBefore = await issuedTo(s.tenant, 'leaky-bot')
      const rev = await admin(h, h.adminToken, 'POST', '/revocations', { type: 'agent', value: 'leaky-bot', tenant: s.tenant, reason: 'secret leaked' })
      assert.equal(rev.status, 201, rev.text)
      assert.equal(rev.body.expires_at, null, 'in force until lifted')

      const refused = await mint(s)
      assert.equal(refused.status, 401)
      assert.equal(refused.body.error, 'invalid_client')
      assert.equal(refused.body.access_token, undefined)
      assert.deepEqual(await introspect(old), { active: false })

      // The entry used to lapse here, and the agent's tokens with it.
      clock.advance(PAST_OLD_EXPIRY_MS)
      const later = await mint(s)
      assert.equal(later.status, 401)
      assert.equal(later.body.error, 'invalid_client')
      assert.equal(await issuedTo(s.tenant, 'leaky-bot'), issuedBefore, 'no token was minted for the revoked agent')
      const listed = await admin(h, h.adminToken, 'GET', '/revocations')
      assert.ok(
        listed.body.revocations.some((r: { seq: number }) => r.seq === rev.body.seq),
        'still listed',
      )
      const snapshot = await admin(h, h.gatewayToken, 'GET', '/feed/snapshot')
      assert.ok(
        snapshot.body.revocations.some((r: { seq: number }) => r.seq === rev.body.seq),
        "still on the gateways' feed",
      )
      assert.ok((await h.events('auth.failed')).some((e) => e.data.reason === 'revoked' && e.tenant === s.tenant))

      const lifted = await admin(h, h.adminToken, 'DELETE', `/revocations/${rev.body.seq}`)
      assert.equal(lifted.status, 200, lifted.text)
      assert.equal(lifted.body.seq, rev.body.seq)
      assert.equal(lifted.body.lifted_at, Math.floor(clock.now() / 1000))
      assert.ok(lifted.body.lift_seq > rev.body.seq)
      const events = await h.events('admin.revocation_lifted')
      assert.ok(events.some((e) => e.data.seq === rev.body.seq && e.actor?.startsWith('admin:') && e.subject === 'agent:leaky-bot'))
      assert.ok(!(await admin(h, h.adminToken, 'GET', '/revocations')).body.revocations.some((r: { seq: number }) => r.seq === rev.body.seq))
      assert.equal((await admin(h, h.adminToken, 'GET', `/revocations/${rev.body.seq}`)).body.lifted_at, Math.floor(clock.now() / 1000))

      const again = await mint(s)
      assert.equal(again.status, 200, again.text)
      assert.equal((await introspect(again.body.access_token as string)).active, true)
      // Repeating the DELETE publishes the lift again (a retry after a 503) and audits nothing new.
      const repeat = await admin(h, h.adminToken, 'DELETE', `/revocations/${rev.body.seq}`)
      assert.equal(repeat.status, 200)
      assert.equal((await h.events('admin.revocation_lifted')).filter((e) => e.data.seq === rev.body.seq).length, 1)
    })

    test('tokens minted before the revocation stay refused after the lift', async () => {
      const s = await seedAgent(h, { tenant: `u-${backend}`, agent: 'bot', agentBody: { max_ttl_seconds: 60 }, cred: { ttl_seconds: 3600, single_use: false } })
      const old = (await mint(s)).body.access_token as string
      const rev = await admin(h, h.adminToken, 'POST', '/revocations', { type: 'agent', value: 'bot', tenant: s.tenant })
      clock.advance(2000)
      const lifted = await admin(h, h.adminToken, 'DELETE', `/revocations/${rev.body.seq}`)
      assert.equal(lifted.status, 200, lifted.text)
      assert.equal(typeof lifted.body.issued_before_seq, 'number')
      const entry = await admin(h, h.adminToken, 'GET', `/revocations/${lifted.body.issued_before_seq}`)
      assert.equal(entry.body.type, 'issued_before')
      assert.equal(entry.body.agent_id, 'bot')
      assert.deepEqual(await introspect(old), { active: false }, 'the token from before the revocation does not come back')
      const fresh = await mint(s)
      assert.equal(fresh.status, 200, fresh.text)
      assert.equal((await introspect(fresh.body.access_token as string)).active, true)
    })

    test('client and tenant revocations hold past the old expiry too; lifting one needs the right admin', async () => {
      const tenant = `c-${backend}`
      const s = await seedAgent(h, { tenant, agent: 'one', agentBody: { max_ttl_seconds: 60 }, cred: { ttl_seconds: 3600, single_use: false } })
      const other = await seedAgent(h, { tenant, agent: 'two', agentBody: { max_ttl_seconds: 60 }, cred: { ttl_seconds: 3600, single_use: false } })
      const client = await admin(h, h.adminToken, 'POST', '/revocations', { type: 'client', value: s.clientId, tenant })
      assert.equal(client.status, 201, client.text)
      clock.advance(PAST_OLD_EXPIRY_MS)
      assert.equal((await mint(s)).status, 401)
      assert.equal((await mint(other)).status, 200, 'another client of the tenant is not affected')

      const whole = await admin(h, h.adminToken, 'POST', '/revocations', { type: 'tenant', value: tenant })
      assert.equal(whole.status, 201, whole.text)
      clock.advance(PAST_OLD_EXPIRY_MS)
      assert.equal((await mint(other)).status, 401)

      const tenantAdmin = (await admin(h, h.adminToken, 'POST', '/admin-tokens', { tenant, role: 'admin', name: 'tenant admin' })).body.token as string
      await seedAgent(h, { tenant: `x-${backend}`, agent: 'x', agentBody: { max_ttl_seconds: 60 } })
      const elsewhere = (await admin(h, h.adminToken, 'POST', '/admin-tokens', { tenant: `x-${backend}`, role: 'admin', name: 'other tenant admin' })).body
        .token as string
      const forbidden = await admin(h, tenantAdmin, 'DELETE', `/revocations/${whole.body.seq}`)
      assert.equal(forbidden.status, 403, 'a tenant-wide entry needs a global admin')
      assert.equal((await admin(h, elsewhere, 'DELETE', `/revocations/${client.body.seq}`)).status, 403, "another tenant's admin may not")
      assert.equal((await admin(h, h.adminToken, 'DELETE', `/revocations/${whole.body.seq}`)).status, 200)
      assert.equal((await mint(other)).status, 200)
      assert.equal((await mint(s)).status, 401, 'the client entry still holds')
      assert.equal((await admin(h, tenantAdmin, 'DELETE', `/revocations/${client.body.seq}`)).status, 200, "the tenant's admin lifts its client entry")
      assert.equal((await mint(s)).status, 200)
    })

    test('jti, kid and issued_before entries are not lifted; unknown ones are 404', async () => {
      const jti = await admin(h, h.adminToken, 'POST', '/revocations', { type: 'jti', value: 'some-jti', tenant: 'acme' })
      assert.equal(jti.status, 201, jti.text)
      const refused = await admin(h, h.adminToken, 'DELETE', `/revocations/${jti.body.seq}`)
      assert.equal(refused.status, 409)
      assert.equal(refused.body.error, 'conflict')
      assert.equal((await admin(h, h.adminToken, 'DELETE', '/revocations/999999')).status, 404)
      assert.equal((await admin(h, h.adminToken, 'DELETE', '/revocations/abc')).status, 400)
    })
  })
}
