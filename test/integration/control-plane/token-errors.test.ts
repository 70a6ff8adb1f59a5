import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import type { AuditWriter } from '../../../src/control-plane/audit/types.js'
import { admin, basic, form, seedAgent, startControlPlane, type Harness } from './harness.js'

describe('token endpoint refuses bad requests with RFC 6749 errors and changes nothing', () => {
  let h: Harness
  let s: Awaited<ReturnType<typeof seedAgent>>

  before(async () => {
    h = await startControlPlane()
    s = await seedAgent(h)
  })
  after(async () => {
    await h.close()
  })

  async function issuedFor(clientId: string): Promise<number> {
    return (await h.events('token.issued')).filter((e) => e.data.client_id === clientId).length
  }
  async function failures(clientId: string): Promise<string[]> {
    return (await h.events('auth.failed')).filter((e) => e.subject === clientId).map((e) => String(e.data.reason))
  }

  test('a wrong secret over Basic gets 401 invalid_client with WWW-Authenticate: Basic and an auth.failed event', async () => {
    const r = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(s.clientId, 'x'.repeat(43)) })
    assert.equal(r.status, 401)
    assert.equal(r.body.error, 'invalid_client')
    assert.equal(r.body.error_description, 'client authentication failed')
    assert.match(r.headers.get('www-authenticate') ?? '', /^Basic realm="aegis"/)
    assert.equal(r.headers.get('cache-control'), 'no-store')
    assert.equal(r.body.access_token, undefined)
    assert.deepEqual(await failures(s.clientId), ['bad_secret'])
    assert.equal(await issuedFor(s.clientId), 0)
  })

  test('a wrong secret over client_secret_post gets the same flat 401', async () => {
    const r = await form(h, '/oauth2/token', { grant_type: 'client_credentials', client_id: s.clientId, client_secret: 'nope' })
    assert.equal(r.status, 401)
    assert.equal(r.body.error, 'invalid_client')
    assert.equal(r.body.error_description, 'client authentication failed')
    assert.equal(r.headers.get('www-authenticate'), null)
  })

  test('an unknown client gets 401 invalid_client and an auth.failed event', async () => {
    const r = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic('bc_unknown', 'whatever') })
    assert.equal(r.status, 401)
    assert.equal(r.body.error, 'invalid_client')
    assert.deepEqual(await failures('bc_unknown'), ['unknown_client'])
  })

  test('no credentials at all, or a malformed Basic header, get 401 invalid_client', async () => {
    const none = await form(h, '/oauth2/token', { grant_type: 'client_credentials' })
    assert.equal(none.status, 401)
    assert.equal(none.body.error, 'invalid_client')
    const bad = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: 'Basic !!!notbase64' })
    assert.equal(bad.status, 401)
    assert.equal(bad.body.error, 'invalid_client')
    assert.match(bad.headers.get('www-authenticate') ?? '', /^Basic/)
    const publicClient = await form(h, '/oauth2/token', { grant_type: 'client_credentials', client_id: s.clientId })
    assert.equal(publicClient.status, 401)
    assert.ok((await failures(s.clientId)).includes('method_not_allowed'))
    const anonymous = (await h.events('auth.failed')).filter((e) => e.actor === 'anonymous').map((e) => e.data.reason)
    assert.ok(anonymous.includes('missing') && anonymous.includes('malformed'))
  })

  test('an expired secret gets 401 and leaves auth.failed (expired)', async () => {
    const e = await seedAgent(h, { agent: 'expiring', cred: { ttl_seconds: 1 } })
    await sleep(1100)
    const r = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(e.clientId, e.secret) })
    assert.equal(r.status, 401)
    assert.equal(r.body.error, 'invalid_client')
    assert.deepEqual(await failures(e.clientId), ['expired'])
    assert.equal(await issuedFor(e.clientId), 0)
  })

  test('a used-up single-use secret stays used, gets 401, and issues nothing more', async () => {
    const one = await seedAgent(h, { agent: 'one-shot', cred: { single_use: true } })
    // A request refused for its scope does not use the credential up.
    const refused = await form(h, '/oauth2/token', { grant_type: 'client_credentials', scope: 'admin:all' }, { authorization: basic(one.clientId, one.secret) })
    assert.equal(refused.status, 400)
    assert.equal(refused.body.error, 'invalid_scope')
    assert.equal((await h.deps.store.credentials.get(one.clientId))?.usedAt, null)
    const ok = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(one.clientId, one.secret) })
    assert.equal(ok.status, 200)
    const usedAt = (await h.deps.store.credentials.get(one.clientId))?.usedAt
    assert.equal(typeof usedAt, 'number')
    const again = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(one.clientId, one.secret) })
    assert.equal(again.status, 401)
    assert.equal(again.body.error, 'invalid_client')
    assert.equal((await h.deps.store.credentials.get(one.clientId))?.usedAt, usedAt)
    assert.equal(await issuedFor(one.clientId), 1)
    assert.deepEqual(await failures(one.clientId), ['used'])
  })

  test('concurrent requests with one single-use secret: exactly one token', async () => {
    const one = await seedAgent(h, { agent: 'race-bot', cred: { single_use: true } })
    const results = await Promise.all(
      Array.from({ length: 8 }, () => form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(one.clientId, one.secret) })),
    )
    assert.equal(results.filter((r) => r.status === 200).length, 1)
    assert.equal(results.filter((r) => r.status === 401).length, 7)
    assert.equal(await issuedFor(one.clientId), 1)
  })

  test('a scope not granted gets 400 invalid_scope; an unregistered audience or resource gets 400 invalid_target', async () => {
    const scope = await form(
      h,
      '/oauth2/token',
      { grant_type: 'client_credentials', scope: 'payments:write root' },
      { authorization: basic(s.clientId, s.secret) },
    )
    assert.equal(scope.status, 400)
    assert.equal(scope.body.error, 'invalid_scope')
    const aud = await form(
      h,
      '/oauth2/token',
      { grant_type: 'client_credentials', audience: 'https://evil.example' },
      { authorization: basic(s.clientId, s.secret) },
    )
    assert.equal(aud.status, 400)
    assert.equal(aud.body.error, 'invalid_target')
    const res = await form(
      h,
      '/oauth2/token',
      { grant_type: 'client_credentials', resource: ['aegis-gateway', 'https://evil.example'] },
      { authorization: basic(s.clientId, s.secret) },
    )
    assert.equal(res.status, 400)
    assert.equal(res.body.error, 'invalid_target')
    assert.equal(await issuedFor(s.clientId), 0)
  })

  test('unsupported, missing and repeated grant types, and mixed auth methods, get 400', async () => {
    const auth = { authorization: basic(s.clientId, s.secret) }
    const unsupported = await form(h, '/oauth2/token', { grant_type: 'password', username: 'a', password: 'b' }, auth)
    assert.equal(unsupported.status, 400)
    assert.equal(unsupported.body.error, 'unsupported_grant_type')
    const missing = await form(h, '/oauth2/token', {}, auth)
    assert.equal(missing.status, 400)
    assert.equal(missing.body.error, 'invalid_request')
    const repeated = await form(h, '/oauth2/token', { grant_type: ['client_credentials', 'client_credentials'] }, auth)
    assert.equal(repeated.status, 400)
    assert.equal(repeated.body.error, 'invalid_request')
    const mixed = await form(h, '/oauth2/token', { grant_type: 'client_credentials', client_secret: s.secret }, auth)
    assert.equal(mixed.status, 400)
    assert.equal(mixed.body.error, 'invalid_request')
    assert.equal(await issuedFor(s.clientId), 0)
  })

  test('JSON, text and malformed bodies get 400 invalid_request; an oversized body gets 413', async () => {
    const auth = basic(s.clientId, s.secret)
    const json = await fetch(`${h.url}/oauth2/token`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/json' },
      body: JSON.stringify({ grant_type: 'client_credentials' }),
    })
    assert.equal(json.status, 400)
    assert.equal(((await json.json()) as { error: string }).error, 'invalid_request')
    const text = await fetch(`${h.url}/oauth2/token`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'text/plain' },
      body: 'grant_type=client_credentials',
    })
    assert.equal(text.status, 400)
    assert.equal(((await text.json()) as { error: string }).error, 'invalid_request')
    const broken = await fetch(`${h.url}/oauth2/token`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/json' },
      body: '{"grant_type":',
    })
    assert.equal(broken.status, 400)
    assert.equal(((await broken.json()) as { error: string }).error, 'invalid_request')
    const big = await fetch(`${h.url}/oauth2/token`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=client_credentials&pad=${'a'.repeat(h.config.limits.bodyBytes + 10)}`,
    })
    assert.equal(big.status, 413)
    assert.equal(((await big.json()) as { error: string }).error, 'payload_too_large')
    const longScope = await form(h, '/oauth2/token', { grant_type: 'client_credentials', scope: 'a'.repeat(5000) }, { authorization: auth })
    assert.equal(longScope.status, 400)
    assert.equal(await issuedFor(s.clientId), 0)
  })

  test('a tenant that requires attestation refuses bootstrap secrets', async () => {
    const att = await seedAgent(h, { tenant: 'attested', agent: 'secure-bot' })
    const flip = await admin(h, h.adminToken, 'PATCH', '/tenants/attested', { require_attestation: true })
    assert.equal(flip.status, 200)
    assert.equal(flip.body.require_attestation, true)
    const r = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(att.clientId, att.secret) })
    assert.equal(r.status, 401)
    assert.equal(r.body.error, 'invalid_client')
    assert.deepEqual(await failures(att.clientId), ['attestation_required'])
    const mint = await admin(h, h.adminToken, 'POST', '/tenants/attested/agents/secure-bot/bootstrap-credentials', {})
    assert.equal(mint.status, 409)
    assert.equal(mint.body.error, 'conflict')
  })

  test('an issuance whose audit write fails answers 503 and no token', async () => {
    const real = h.deps.audit
    const failing: AuditWriter = {
      chainId: real.chainId,
      append: (e) => (e.type === 'token.issued' ? Promise.reject(new Error('disk full')) : real.append(e)),
      close: () => real.close(),
    }
    const before = await issuedFor(s.clientId)
    const metricsBefore = await (await fetch(`${h.url}/metrics`)).text()
    h.deps.audit = failing
    try {
      const r = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(s.clientId, s.secret) })
      assert.equal(r.status, 503)
      assert.equal(r.body.error, 'temporarily_unavailable')
      assert.equal(r.body.access_token, undefined)
      assert.ok(!r.text.includes('eyJ'))
    } finally {
      h.deps.audit = real
    }
    assert.equal(await issuedFor(s.clientId), before)
    const metricsAfter = await (await fetch(`${h.url}/metrics`)).text()
    const count = (m: string): string | undefined => /aegis_tokens_issued_total\{grant="client_credentials"\} (\d+)/.exec(m)?.[1]
    assert.equal(count(metricsAfter), count(metricsBefore))
    const ok = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(s.clientId, s.secret) })
    assert.equal(ok.status, 200)
  })
})

describe('token endpoint rate limits', () => {
  let h: Harness
  before(async () => {
    h = await startControlPlane({ overrides: { rateLimit: { perClient: 3, perIp: 5, windowSeconds: 3600 } } })
  })
  after(async () => {
    await h.close()
  })

  test('past the per-client limit a client gets 429 rate_limited with Retry-After; past the per-IP limit every client from that address does', async () => {
    const a = await seedAgent(h, { agent: 'a' })
    const b = await seedAgent(h, { agent: 'b' })
    const codes: number[] = []
    for (let i = 0; i < 4; i++)
      codes.push((await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(a.clientId, a.secret) })).status)
    assert.deepEqual(codes, [200, 200, 200, 429])
    // Four requests from this address so far (limit 5): client b gets one through, then the address is limited.
    const first = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(b.clientId, b.secret) })
    assert.equal(first.status, 200)
    const limited = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(b.clientId, b.secret) })
    assert.equal(limited.status, 429)
    assert.equal(limited.body.error, 'rate_limited')
    const retry = Number(limited.headers.get('retry-after'))
    assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 3600)
    assert.equal((await h.events('token.issued')).length, 4)
  })
})
