import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { isFeedHub } from '../../../src/control-plane/feed/index.js'
import type { FeedEvent } from '../../../src/control-plane/feed/events.js'
import { canonicalJson } from '../../../src/lib/canonical-json.js'
import { sha256b64url } from '../../../src/lib/hash.js'
import { admin, basic, form, seedAgent, startControlPlane, type Harness } from './harness.js'

describe('admin API', () => {
  let h: Harness
  let acmeAdmin: string
  before(async () => {
    h = await startControlPlane()
    await seedAgent(h, { tenant: 'acme' })
    await seedAgent(h, { tenant: 'globex', agent: 'globex-bot' })
    const t = await admin(h, h.adminToken, 'POST', '/admin-tokens', { tenant: 'acme', role: 'admin', name: 'acme admin' })
    assert.equal(t.status, 201)
    acmeAdmin = t.body.token
  })
  after(async () => {
    await h.close()
  })

  test('401 without a valid admin token', async () => {
    for (const path of ['/tenants', '/tenants/acme/agents', '/kpis', '/revocations', '/feed/snapshot', '/gateways']) {
      const none = await fetch(`${h.url}/admin/v1${path}`)
      assert.equal(none.status, 401, path)
      assert.equal(((await none.json()) as { error: string }).error, 'unauthorized')
      const wrong = await admin(h, 'aat_wrong', 'GET', path)
      assert.equal(wrong.status, 401, path)
    }
  })

  test('a tenant admin gets 403 outside its tenant and changes nothing there', async () => {
    const list = await admin(h, acmeAdmin, 'GET', '/tenants')
    assert.equal(list.status, 200)
    assert.deepEqual(
      list.body.tenants.map((t: { id: string }) => t.id),
      ['acme'],
    )
    const checks: Array<[string, string, unknown?]> = [
      ['GET', '/tenants/globex'],
      ['PATCH', '/tenants/globex', { name: 'pwned' }],
      ['DELETE', '/tenants/globex'],
      ['POST', '/tenants', { id: 'new-tenant' }],
      ['GET', '/tenants/globex/agents'],
      ['GET', '/tenants/globex/agents/globex-bot'],
      ['POST', '/tenants/globex/agents', { agent_id: 'intruder', scopes: [], capabilities: [] }],
      ['PATCH', '/tenants/globex/agents/globex-bot', { scopes: ['x'] }],
      ['DELETE', '/tenants/globex/agents/globex-bot'],
      ['POST', '/tenants/globex/agents/globex-bot/bootstrap-credentials', {}],
      ['GET', '/tenants/globex/trusted-issuers'],
      ['POST', '/admin-tokens', { tenant: 'globex', role: 'admin' }],
      ['POST', '/admin-tokens', { tenant: null, role: 'admin' }],
      ['POST', '/revocations', { type: 'agent', value: 'globex-bot', tenant: 'globex' }],
      ['POST', '/revocations', { type: 'tenant', value: 'globex' }],
      ['POST', '/revocations', { type: 'kid', value: h.deps.keys.currentKid() }],
      ['GET', '/feed/snapshot'],
    ]
    const revsBefore = (await h.deps.store.revocations.listActive(Date.now())).length
    for (const [method, path, body] of checks) {
      const r = await admin(h, acmeAdmin, method, path, body)
      assert.equal(r.status, 403, `${method} ${path}: ${r.text}`)
      assert.equal(r.body.error, 'forbidden')
    }
    assert.equal((await h.deps.store.tenants.get('globex'))?.name, 'globex')
    assert.ok(await h.deps.store.agents.get('globex', 'globex-bot'))
    assert.equal(await h.deps.store.agents.get('globex', 'intruder'), null)
    assert.equal(await h.deps.store.tenants.get('new-tenant'), null)
    assert.equal((await h.deps.store.revocations.listActive(Date.now())).length, revsBefore)
    // Inside its tenant it works.
    const own = await admin(h, acmeAdmin, 'POST', '/tenants/acme/agents', { agent_id: 'acme-helper', scopes: ['crm:read'], capabilities: ['crm.read'] })
    assert.equal(own.status, 201)
    const rev = await admin(h, acmeAdmin, 'POST', '/revocations', { type: 'issued_before', value: Math.floor(Date.now() / 1000) })
    assert.equal(rev.status, 201)
    assert.equal(rev.body.tenant, 'acme')
  })

  test('gateway and approver tokens may not administer', async () => {
    const approver = await admin(h, h.adminToken, 'POST', '/admin-tokens', {
      tenant: 'acme',
      role: 'approver',
      groups: ['finance'],
      linked_identities: ['slack:T1/U1'],
    })
    assert.equal(approver.status, 201)
    assert.deepEqual(approver.body.groups, ['finance'])
    for (const token of [h.gatewayToken, approver.body.token]) {
      assert.equal((await admin(h, token, 'POST', '/tenants', { id: 'nope' })).status, 403)
      assert.equal((await admin(h, token, 'POST', '/tenants/acme/agents', { agent_id: 'nope' })).status, 403)
    }
  })

  test('admin tokens are shown once, stored hashed, audited, and stop working when deleted', async () => {
    const created = await admin(h, h.adminToken, 'POST', '/admin-tokens', { tenant: null, role: 'admin', name: 'automation' })
    assert.equal(created.status, 201)
    assert.equal(created.headers.get('cache-control'), 'no-store')
    const { id, token } = created.body
    const stored = await h.deps.store.adminTokens.get(id)
    assert.equal(stored?.tokenHash, sha256b64url(token))
    const listed = await admin(h, h.adminToken, 'GET', '/admin-tokens')
    assert.ok(!listed.text.includes(token))
    assert.ok(!listed.text.includes(stored!.tokenHash))
    assert.equal((await admin(h, token, 'GET', '/tenants')).status, 200)
    assert.equal((await admin(h, acmeAdmin, 'DELETE', `/admin-tokens/${id}`)).status, 403)
    assert.equal((await admin(h, h.adminToken, 'DELETE', `/admin-tokens/${id}`)).status, 204)
    assert.equal((await admin(h, token, 'GET', '/tenants')).status, 401)
    assert.equal((await admin(h, h.adminToken, 'DELETE', '/admin-tokens/at_missing')).status, 404)
    const events = await h.events('admin.token_created')
    assert.ok(events.some((e) => e.subject === id && e.actor?.startsWith('admin:')))
    assert.ok(!JSON.stringify(events).includes(token))
  })

  test('bodies are validated strictly: types, sizes, id charset, unknown fields, bounds', async () => {
    const bad: Array<[string, string, unknown]> = [
      ['POST', '/tenants', { id: 'bad id' }],
      ['POST', '/tenants', { id: 'x'.repeat(65) }],
      ['POST', '/tenants', { id: 'ok', extra: 1 }],
      ['POST', '/tenants', { id: 'ok', require_attestation: 'yes' }],
      ['POST', '/tenants/acme/agents', { agent_id: 'a/b' }],
      ['POST', '/tenants/acme/agents', { agent_id: 'v', max_ttl_seconds: 3601 }],
      ['POST', '/tenants/acme/agents', { agent_id: 'v', max_ttl_seconds: 0 }],
      ['POST', '/tenants/acme/agents', { agent_id: 'v', scopes: 'payments:write' }],
      ['POST', '/tenants/acme/agents', { agent_id: 'v', scopes: ['has space'] }],
      ['POST', '/tenants/acme/agents', { agent_id: 'v', capabilities: Array.from({ length: 1001 }, (_, i) => `t${i}`) }],
      ['POST', '/tenants/acme/agents', { agent_id: 'v', capabilities: ['a'], schemas: { b: { type: 'object' } } }],
      ['POST', '/tenants/acme/agents', { agent_id: 'v', token_endpoint_auth_method: 'none' }],
      ['POST', '/tenants/acme/agents', { agent_id: 'v', token_endpoint_auth_method: 'private_key_jwt' }],
      [
        'POST',
        '/tenants/acme/agents',
        { agent_id: 'v', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'abc', d: 'secret' }] } },
      ],
      ['POST', '/tenants/acme/agents', { agent_id: 'v', token_endpoint_auth_method: 'tls_client_auth' }],
      ['POST', '/tenants/acme/agents/billing-bot/bootstrap-credentials', { ttl_seconds: 86401 }],
      ['POST', '/tenants/acme/agents/billing-bot/bootstrap-credentials', { single_use: 'true' }],
      ['POST', '/admin-tokens', { role: 'root' }],
      ['POST', '/admin-tokens', { role: 'gateway', groups: ['x'] }],
      ['POST', '/revocations', { type: 'everything', value: 'x' }],
      ['POST', '/revocations', { type: 'agent', value: 'billing-bot' }],
      ['POST', '/revocations', { type: 'client', value: 'bc_x' }],
      ['POST', '/revocations', { type: 'issued_before', value: 'yesterday', tenant: 'acme' }],
      ['POST', '/revocations', { type: 'issued_before', value: 1, tenant: 'acme' }],
      ['POST', '/revocations', { type: 'jti', value: 'x', agent_id: 'billing-bot' }],
      ['POST', '/revocations', { type: 'kid', value: 'k1', tenant: 'acme' }],
      ['POST', '/revocations', { type: 'jti', value: 'x'.repeat(200) }],
    ]
    for (const [method, path, body] of bad) {
      const r = await admin(h, h.adminToken, method, path, body)
      assert.equal(r.status, 400, `${method} ${path} ${JSON.stringify(body).slice(0, 80)}: ${r.status} ${r.text}`)
      assert.equal(r.body.error, 'invalid_request')
      assert.equal(typeof r.body.error_description, 'string')
    }
    assert.equal(await h.deps.store.agents.get('acme', 'v'), null)
    assert.equal(await h.deps.store.tenants.get('ok'), null)
    const deep = await fetch(`${h.url}/admin/v1/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${h.adminToken}`, 'content-type': 'application/json' },
      body: `{"id":${'['.repeat(100)}${']'.repeat(100)}}`,
    })
    assert.equal(deep.status, 400)
    const malformed = await fetch(`${h.url}/admin/v1/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${h.adminToken}`, 'content-type': 'application/json' },
      body: '{"id":"x"',
    })
    assert.equal(malformed.status, 400)
  })

  test('404 and 409 where docs/reference.md says', async () => {
    assert.equal((await admin(h, h.adminToken, 'GET', '/tenants/missing')).status, 404)
    assert.equal((await admin(h, h.adminToken, 'POST', '/tenants/missing/agents', { agent_id: 'x' })).status, 404)
    assert.equal((await admin(h, h.adminToken, 'GET', '/tenants/acme/agents/missing')).status, 404)
    assert.equal((await admin(h, h.adminToken, 'POST', '/tenants/acme/agents/missing/bootstrap-credentials', {})).status, 404)
    const dupTenant = await admin(h, h.adminToken, 'POST', '/tenants', { id: 'acme' })
    assert.equal(dupTenant.status, 409)
    assert.equal(dupTenant.body.error, 'conflict')
    assert.equal((await admin(h, h.adminToken, 'POST', '/tenants/acme/agents', { agent_id: 'billing-bot' })).status, 409)
    assert.equal((await admin(h, h.adminToken, 'DELETE', '/tenants/acme')).status, 409)
  })

  test('agents: the manifest is content-addressed, every change publishes an agent event, delete revokes the credentials', async () => {
    assert.ok(isFeedHub(h.deps.feed))
    const seen: FeedEvent[] = []
    const unsubscribe = h.deps.feed.subscribe((e) => seen.push(e))
    try {
      const schemas = { 'payments.transfer': { type: 'object', properties: { amount: { type: 'number' } } } }
      const created = await admin(h, h.adminToken, 'POST', '/tenants/acme/agents', {
        agent_id: 'manifested',
        scopes: ['payments:write'],
        capabilities: ['payments.transfer', 'crm.read', 'crm.read'],
        schemas,
        audiences: ['aegis-gateway', 'https://tools.example'],
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_san_uri: 'spiffe://acme/manifested',
      })
      assert.equal(created.status, 201, created.text)
      assert.deepEqual(created.body.capabilities, ['crm.read', 'payments.transfer'])
      assert.match(created.body.client_id, /^ag_/)
      const expected = { capabilities: ['crm.read', 'payments.transfer'], schemas }
      assert.equal(created.body.capability_hash, sha256b64url(canonicalJson(expected)))
      const m = await fetch(`${h.url}/admin/v1/manifests/${created.body.capability_hash}`, { headers: { authorization: `Bearer ${h.gatewayToken}` } })
      assert.equal(m.status, 200)
      assert.equal(m.headers.get('cache-control'), 'public, max-age=31536000, immutable')
      const text = await m.text()
      assert.equal(sha256b64url(text), created.body.capability_hash)
      assert.deepEqual(JSON.parse(text), expected)
      assert.equal((await admin(h, h.gatewayToken, 'GET', `/manifests/${'A'.repeat(43)}`)).status, 404)
      assert.equal((await admin(h, h.gatewayToken, 'GET', '/manifests/short')).status, 400)

      const patched = await admin(h, h.adminToken, 'PATCH', '/tenants/acme/agents/manifested', { capabilities: ['payments.transfer'], max_ttl_seconds: 300 })
      assert.equal(patched.status, 200, patched.text)
      assert.notEqual(patched.body.capability_hash, created.body.capability_hash)
      assert.equal(patched.body.max_ttl_seconds, 300)
      // The old manifest stays retrievable: tokens minted against it may still be presented.
      assert.equal((await admin(h, h.gatewayToken, 'GET', `/manifests/${created.body.capability_hash}`)).status, 200)
      const bad = await admin(h, h.adminToken, 'PATCH', '/tenants/acme/agents/manifested', { agent_id: 'renamed' })
      assert.equal(bad.status, 400)

      // Registered for tls_client_auth: no bootstrap secret, until it switches back to a secret method.
      const refused = await admin(h, h.adminToken, 'POST', '/tenants/acme/agents/manifested/bootstrap-credentials', { ttl_seconds: 600 })
      assert.equal(refused.status, 409)
      const switched = await admin(h, h.adminToken, 'PATCH', '/tenants/acme/agents/manifested', { token_endpoint_auth_method: 'client_secret_post' })
      assert.equal(switched.status, 200)
      const cred = await admin(h, h.adminToken, 'POST', '/tenants/acme/agents/manifested/bootstrap-credentials', { ttl_seconds: 600 })
      assert.equal(cred.status, 201)
      const minted = await form(
        h,
        '/oauth2/token',
        { grant_type: 'client_credentials' },
        { authorization: basic(cred.body.client_id, cred.body.client_secret) },
      )
      assert.equal(minted.status, 200)
      // Switching to a key method makes existing secrets useless at once.
      const locked = await admin(h, h.adminToken, 'PATCH', '/tenants/acme/agents/manifested', { token_endpoint_auth_method: 'tls_client_auth' })
      assert.equal(locked.status, 200)
      const afterLock = await form(
        h,
        '/oauth2/token',
        { grant_type: 'client_credentials' },
        { authorization: basic(cred.body.client_id, cred.body.client_secret) },
      )
      assert.equal(afterLock.status, 401)
      assert.equal(cred.body.client_secret.length, 43)
      assert.ok(Number.isInteger(cred.body.expires_at) && cred.body.expires_at > Date.now() / 1000 + 590, 'epoch seconds')
      const del = await admin(h, h.adminToken, 'DELETE', '/tenants/acme/agents/manifested')
      assert.equal(del.status, 204)
      assert.equal((await admin(h, h.adminToken, 'GET', '/tenants/acme/agents/manifested')).status, 404)
      const r = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(cred.body.client_id, cred.body.client_secret) })
      assert.equal(r.status, 401)

      const agentEvents = seen.filter((e): e is Extract<FeedEvent, { kind: 'agent' }> => e.kind === 'agent' && e.agent.agentId === 'manifested')
      assert.deepEqual(
        agentEvents.map((e) => e.agent.capabilityHash),
        [created.body.capability_hash, patched.body.capability_hash, patched.body.capability_hash, patched.body.capability_hash, null],
      )
      for (const type of ['admin.agent_created', 'admin.agent_updated', 'admin.agent_deleted', 'admin.credential_created']) {
        const ev = await h.events(type)
        assert.ok(
          ev.some((e) => e.subject === 'manifested' && e.actor?.startsWith('admin:')),
          type,
        )
      }
      assert.ok(!JSON.stringify(await h.events('admin.credential_created')).includes(cred.body.client_secret))
    } finally {
      unsubscribe()
    }
  })

  test('tenants: create, read, update, delete, audited', async () => {
    const c = await admin(h, h.adminToken, 'POST', '/tenants', { id: 'initech', name: 'Initech', require_attestation: true })
    assert.equal(c.status, 201)
    assert.deepEqual(
      { id: c.body.id, name: c.body.name, require_attestation: c.body.require_attestation },
      { id: 'initech', name: 'Initech', require_attestation: true },
    )
    const u = await admin(h, h.adminToken, 'PATCH', '/tenants/initech', { name: 'Initech Corp' })
    assert.equal(u.body.name, 'Initech Corp')
    assert.equal(u.body.require_attestation, true)
    assert.ok((await admin(h, h.adminToken, 'GET', '/tenants')).body.tenants.some((t: { id: string }) => t.id === 'initech'))
    assert.equal((await admin(h, h.adminToken, 'DELETE', '/tenants/initech')).status, 204)
    assert.equal((await admin(h, h.adminToken, 'GET', '/tenants/initech')).status, 404)
    for (const type of ['admin.tenant_created', 'admin.tenant_updated', 'admin.tenant_deleted']) {
      assert.ok(
        (await h.events(type)).some((e) => e.subject === 'initech'),
        type,
      )
    }
  })

  test('trusted issuers: create, list, delete, with their rules validated', async () => {
    const body = {
      issuer: 'https://kubernetes.default.svc',
      jwks_uri: 'https://kubernetes.default.svc/openid/v1/jwks',
      audience: 'aegis',
      rules: [{ claims: { sub: 'system:serviceaccount:ns:sa' }, agent_id: 'billing-bot' }],
    }
    const c = await admin(h, h.adminToken, 'POST', '/tenants/acme/trusted-issuers', body)
    assert.equal(c.status, 201, c.text)
    assert.equal((await admin(h, h.adminToken, 'POST', '/tenants/acme/trusted-issuers', { ...body, jwks: { keys: [{ kty: 'OKP' }] } })).status, 400)
    assert.equal(
      (await admin(h, h.adminToken, 'POST', '/tenants/acme/trusted-issuers', { ...body, rules: [{ claims: { sub: 'x' }, agent_id: 'nobody' }] })).status,
      400,
    )
    assert.equal((await admin(h, h.adminToken, 'POST', '/tenants/acme/trusted-issuers', { ...body, issuer: 'not a url' })).status, 400)
    const list = await admin(h, h.adminToken, 'GET', '/tenants/acme/trusted-issuers')
    assert.deepEqual(
      list.body.trusted_issuers.map((t: { id: string }) => t.id),
      [c.body.id],
    )
    assert.equal((await admin(h, h.adminToken, 'DELETE', `/tenants/acme/trusted-issuers/${c.body.id}`)).status, 204)
    assert.equal((await admin(h, h.adminToken, 'DELETE', `/tenants/acme/trusted-issuers/${c.body.id}`)).status, 404)
  })

  test('revocations: every type accepted with its expiry (none for agent, client, tenant: they hold until lifted), listed, counted, audited', async () => {
    const now = Math.floor(Date.now() / 1000)
    const max = (h.config.tokens.maxTtlSeconds + h.config.tokens.clockSkewSeconds) * 1000
    const cases = [
      { type: 'jti', value: 'f3b1c2d4-0000-4000-8000-000000000001' },
      { type: 'agent', value: 'billing-bot', tenant: 'acme' },
      { type: 'client', value: 'bc_abc', tenant: 'acme' },
      { type: 'tenant', value: 'globex' },
      { type: 'kid', value: h.deps.keys.currentKid() },
      { type: 'issued_before', value: now - 60, tenant: 'acme', agent_id: 'billing-bot' },
    ]
    for (const c of cases) {
      const t0 = Date.now()
      const r = await admin(h, h.adminToken, 'POST', '/revocations', { ...c, reason: 'test' })
      assert.equal(r.status, 201, `${c.type}: ${r.text}`)
      assert.equal(r.body.type, c.type)
      assert.equal(r.body.value, String(c.value))
      if (c.type === 'issued_before') assert.equal(r.body.expires_at, Math.floor(((now - 60) * 1000 + max) / 1000))
      else if (c.type === 'agent' || c.type === 'client' || c.type === 'tenant') assert.equal(r.body.expires_at, null)
      else assert.ok(r.body.expires_at >= Math.floor((t0 + max) / 1000) && r.body.expires_at <= Math.floor((Date.now() + max) / 1000))
    }
    const list = await admin(h, h.adminToken, 'GET', '/revocations')
    assert.equal(list.status, 200)
    for (const c of cases)
      assert.ok(
        list.body.revocations.some((r: { type: string; value: string }) => r.type === c.type && r.value === String(c.value)),
        c.type,
      )
    const acmeList = await admin(h, acmeAdmin, 'GET', '/revocations')
    assert.ok(acmeList.body.revocations.every((r: { tenant: string }) => r.tenant === 'acme'))
    const created = await h.events('admin.revocation_created')
    assert.ok(created.length >= cases.length)
    const m = await (await fetch(`${h.url}/metrics`)).text()
    assert.match(m, /aegis_revocations_total\{type="kid"\} [1-9]/)
    assert.ok((await admin(h, h.adminToken, 'GET', '/kpis')).body.revocations >= cases.length)
  })

  test('every *_at field the admin API answers is integer epoch seconds, and ms times name their unit (docs/reference.md "Times and units")', async () => {
    const before = Math.floor(Date.now() / 1000)
    const cred = await admin(h, h.adminToken, 'POST', '/tenants/acme/agents/billing-bot/bootstrap-credentials', { ttl_seconds: 600 })
    assert.equal(cred.status, 201, cred.text)
    const answers: Array<[string, unknown]> = [['POST bootstrap-credentials', cred.body]]
    for (const path of [
      '/tenants',
      '/tenants/acme',
      '/tenants/acme/agents',
      '/admin-tokens',
      '/revocations',
      '/keys',
      '/gateways',
      '/kpis?history=1',
      '/audit?order=desc&limit=50',
    ]) {
      const r = await admin(h, h.adminToken, 'GET', path)
      assert.equal(r.status, 200, `${path}: ${r.text}`)
      answers.push([path, r.body])
    }
    const found = new Set<string>()
    const walk = (where: string, v: unknown): void => {
      if (Array.isArray(v)) {
        for (const [i, x] of v.entries()) walk(`${where}[${i}]`, x)
      } else if (v !== null && typeof v === 'object')
        for (const [k, x] of Object.entries(v)) {
          // An audit event's data is hashed as written (docs/reference.md "Audit"): not an answer's own field.
          if (k === 'data' && where.includes('events[')) continue
          if (k.endsWith('_at') && x !== null) {
            found.add(k)
            assert.ok(Number.isInteger(x) && (x as number) > 1e9 && (x as number) < 1e11, `${where}.${k} = ${String(x)} is not epoch seconds`)
          }
          if (k === 'ts' || k === 'start') assert.fail(`${where}.${k}: a time without its unit`)
          if (k.endsWith('_ms') && k !== 'latency_ms') {
            found.add(k)
            assert.ok(Number.isInteger(x) && (x as number) > 1e12, `${where}.${k} = ${String(x)} is not epoch ms`)
          }
          walk(`${where}.${k}`, x)
        }
    }
    for (const [where, body] of answers) walk(where, body)
    for (const k of ['created_at', 'updated_at', 'expires_at', 'activates_at', 'start_at', 'ts_ms']) assert.ok(found.has(k), `no ${k} seen`)
    assert.ok(cred.body.expires_at >= before + 600 && cred.body.expires_at <= Math.floor(Date.now() / 1000) + 600)
  })
})
