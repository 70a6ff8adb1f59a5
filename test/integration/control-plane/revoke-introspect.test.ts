import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { admin, basic, form, seedAgent, startControlPlane, type Harness } from './harness.js'

describe('RFC 7009 revocation and RFC 7662 introspection', () => {
  let h: Harness
  let s: Awaited<ReturnType<typeof seedAgent>>
  let other: Awaited<ReturnType<typeof seedAgent>>

  before(async () => {
    h = await startControlPlane()
    s = await seedAgent(h)
    other = await seedAgent(h, { tenant: 'globex', agent: 'other-bot' })
  })
  after(async () => {
    await h.close()
  })

  async function mint(c = s): Promise<string> {
    const r = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(c.clientId, c.secret) })
    assert.equal(r.status, 200, r.text)
    return r.body.access_token as string
  }
  const introspect = (token: string, headers: Record<string, string>) => form(h, '/oauth2/introspect', { token }, headers)

  test('an unauthenticated caller gets 401 and learns nothing', async () => {
    const token = await mint()
    const r = await introspect(token, {})
    assert.equal(r.status, 401)
    assert.equal(r.body.error, 'invalid_client')
    assert.equal(r.body.active, undefined)
    const bad = await introspect(token, { authorization: 'Bearer not-a-real-admin-token' })
    assert.equal(bad.status, 401)
    assert.equal(bad.body.active, undefined)
    const revoke = await form(h, '/oauth2/revoke', { token })
    assert.equal(revoke.status, 401)
  })

  test("gateway and admin bearer tokens and the token's own client see an active token with its claims", async () => {
    const token = await mint()
    for (const auth of [`Bearer ${h.gatewayToken}`, `Bearer ${h.adminToken}`, basic(s.clientId, s.secret)]) {
      const r = await introspect(token, { authorization: auth })
      assert.equal(r.status, 200)
      assert.equal(r.headers.get('cache-control'), 'no-store')
      assert.equal(r.body.active, true)
      assert.equal(r.body.client_id, s.clientId)
      assert.equal(r.body.sub, 'billing-bot')
      assert.equal(r.body.tenant, 'acme')
      assert.equal(r.body.scope, 'payments:write crm:read')
      assert.equal(r.body.token_type, 'Bearer')
      assert.equal(typeof r.body.exp, 'number')
    }
    // Another tenant's client and a tenant admin of another tenant learn nothing about it.
    const foreign = await introspect(token, { authorization: basic(other.clientId, other.secret) })
    assert.deepEqual(foreign.body, { active: false })
    const globexAdmin = await admin(h, h.adminToken, 'POST', '/admin-tokens', { tenant: 'globex', role: 'admin', name: 'globex admin' })
    const scoped = await introspect(token, { authorization: `Bearer ${globexAdmin.body.token}` })
    assert.deepEqual(scoped.body, { active: false })
    const approver = await admin(h, h.adminToken, 'POST', '/admin-tokens', { tenant: null, role: 'approver', name: 'approver' })
    const forbidden = await introspect(token, { authorization: `Bearer ${approver.body.token}` })
    assert.equal(forbidden.status, 403)
  })

  test('garbage, tampered and foreign tokens are inactive', async () => {
    const token = await mint()
    const auth = { authorization: `Bearer ${h.gatewayToken}` }
    assert.deepEqual((await introspect('not.a.jwt', auth)).body, { active: false })
    const [hd, pl, sig] = token.split('.')
    const claims = JSON.parse(Buffer.from(pl!, 'base64url').toString())
    claims.scope = 'everything'
    const tampered = `${hd}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${sig}`
    assert.deepEqual((await introspect(tampered, auth)).body, { active: false })
    const missing = await form(h, '/oauth2/introspect', {}, auth)
    assert.equal(missing.status, 400)
    assert.equal(missing.body.error, 'invalid_request')
  })

  test("a client revoking someone else's token gets 200 and changes nothing; its own client revokes it for good", async () => {
    const token = await mint()
    const jti = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).jti as string
    const foreign = await form(h, '/oauth2/revoke', { token, token_type_hint: 'access_token' }, { authorization: basic(other.clientId, other.secret) })
    assert.equal(foreign.status, 200)
    assert.equal((await introspect(token, { authorization: `Bearer ${h.gatewayToken}` })).body.active, true)
    const unknown = await form(h, '/oauth2/revoke', { token: 'garbage' }, { authorization: basic(s.clientId, s.secret) })
    assert.equal(unknown.status, 200)
    const before = (await h.deps.store.revocations.listActive(Date.now())).length

    const own = await form(h, '/oauth2/revoke', { token }, { authorization: basic(s.clientId, s.secret) })
    assert.equal(own.status, 200)
    assert.equal(own.text, '')
    const active = await h.deps.store.revocations.listActive(Date.now())
    assert.equal(active.length, before + 1)
    const entry = active.find((r) => r.type === 'jti' && r.value === jti)
    assert.ok(entry)
    assert.equal(entry.tenant, 'acme')
    assert.equal((await introspect(token, { authorization: `Bearer ${h.gatewayToken}` })).body.active, false)
    const events = await h.events('token.revoked')
    assert.ok(events.some((e) => e.subject === jti && e.actor === `client:${s.clientId}`))
    // A fresh token of the same client is unaffected.
    assert.equal((await introspect(await mint(), { authorization: `Bearer ${h.gatewayToken}` })).body.active, true)
  })

  test('an admin revocation of the agent makes its tokens inactive; a changed manifest does too', async () => {
    const victim = await seedAgent(h, { agent: 'victim' })
    const token = await mint(victim)
    const auth = { authorization: `Bearer ${h.gatewayToken}` }
    assert.equal((await introspect(token, auth)).body.active, true)
    const r = await admin(h, h.adminToken, 'POST', '/revocations', { type: 'agent', value: 'victim', tenant: 'acme', reason: 'compromised' })
    assert.equal(r.status, 201)
    assert.equal((await introspect(token, auth)).body.active, false)

    const changing = await seedAgent(h, { agent: 'changing' })
    const t2 = await mint(changing)
    assert.equal((await introspect(t2, auth)).body.active, true)
    const p = await admin(h, h.adminToken, 'PATCH', '/tenants/acme/agents/changing', { capabilities: ['crm.read'] })
    assert.equal(p.status, 200)
    assert.equal((await introspect(t2, auth)).body.active, false)
  })
})
