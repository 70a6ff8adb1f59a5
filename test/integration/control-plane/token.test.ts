import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import * as oidc from 'openid-client'
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose'
import { buildManifest, capabilityHash } from '../../../src/lib/capability.js'
import { admin, basic, form, seedAgent, startControlPlane, type Harness } from './harness.js'

describe('token endpoint: client_credentials with bootstrap credentials', () => {
  let h: Harness
  let s: Awaited<ReturnType<typeof seedAgent>>

  before(async () => {
    h = await startControlPlane()
    s = await seedAgent(h, { agentBody: { audiences: ['aegis-gateway', 'https://tools.example/crm'] } })
  })
  after(async () => {
    await h.close()
  })

  test('metadata lists every RFC 8414 field docs/reference.md names', async () => {
    const res = await fetch(`${h.url}/.well-known/oauth-authorization-server`)
    assert.equal(res.status, 200)
    const m = (await res.json()) as Record<string, unknown>
    assert.equal(m.issuer, h.url)
    assert.equal(m.token_endpoint, `${h.url}/oauth2/token`)
    assert.equal(m.jwks_uri, `${h.url}/.well-known/jwks.json`)
    assert.equal(m.revocation_endpoint, `${h.url}/oauth2/revoke`)
    assert.equal(m.introspection_endpoint, `${h.url}/oauth2/introspect`)
    assert.deepEqual(m.grant_types_supported, ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'])
    // No TLS listener and an http issuer: no client certificate can arrive, so no tls_client_auth (RFC 8705 §5).
    assert.deepEqual(m.token_endpoint_auth_methods_supported, ['client_secret_basic', 'client_secret_post', 'private_key_jwt'])
    assert.ok(Array.isArray(m.token_endpoint_auth_signing_alg_values_supported))
    assert.ok(Array.isArray(m.dpop_signing_alg_values_supported))
    assert.ok(Array.isArray(m.introspection_endpoint_auth_methods_supported))
    assert.ok(Array.isArray(m.revocation_endpoint_auth_methods_supported))
  })

  test('openid-client discovers the metadata and runs client_credentials (basic and post); jose verifies the token over HTTP', async () => {
    const jwks = createRemoteJWKSet(new URL(`${h.url}/.well-known/jwks.json`))
    for (const auth of [oidc.ClientSecretBasic(s.secret), oidc.ClientSecretPost(s.secret)]) {
      const config = await oidc.discovery(new URL(h.url), s.clientId, undefined, auth, { execute: [oidc.allowInsecureRequests], algorithm: 'oauth2' })
      const tokens = await config.serverMetadata().token_endpoint
      assert.equal(tokens, `${h.url}/oauth2/token`)
      const res = await oidc.clientCredentialsGrant(config, { scope: 'crm:read' })
      assert.equal(res.token_type.toLowerCase(), 'bearer')
      assert.equal(res.scope, 'crm:read')
      assert.equal(res.expires_in, 600)
      const { payload, protectedHeader } = await jwtVerify(res.access_token, jwks, {
        issuer: h.url,
        audience: 'aegis-gateway',
        typ: 'at+jwt',
        algorithms: ['EdDSA'],
      })
      assert.equal(protectedHeader.alg, 'EdDSA')
      assert.equal(protectedHeader.typ, 'at+jwt')
      assert.equal(typeof protectedHeader.kid, 'string')
      assert.equal(payload.scope, 'crm:read')
    }
  })

  test('the token carries exactly the claims docs/reference.md lists, with the RFC 8785 capability_hash', async () => {
    const before = Math.floor(Date.now() / 1000)
    const r = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(s.clientId, s.secret) })
    assert.equal(r.status, 200)
    assert.equal(r.headers.get('cache-control'), 'no-store')
    assert.equal(r.headers.get('pragma'), 'no-cache')
    assert.deepEqual(Object.keys(r.body).sort(), ['access_token', 'expires_in', 'scope', 'token_type'])
    assert.equal(r.body.token_type, 'Bearer')
    const jwks = createRemoteJWKSet(new URL(`${h.url}/.well-known/jwks.json`))
    const { payload } = await jwtVerify(r.body.access_token, jwks, { issuer: h.url, typ: 'at+jwt' })
    assert.deepEqual(
      Object.keys(payload).sort(),
      ['agent_id', 'aud', 'capability_hash', 'client_id', 'exp', 'iat', 'iss', 'jti', 'nbf', 'policy_version', 'scope', 'sub', 'tenant'].sort(),
    )
    assert.equal(payload.iss, h.url)
    assert.equal(payload.sub, 'billing-bot')
    assert.equal(payload.agent_id, 'billing-bot')
    assert.equal(payload.client_id, s.clientId)
    assert.equal(payload.tenant, 'acme')
    assert.equal(payload.aud, 'aegis-gateway')
    assert.equal(payload.scope, 'payments:write crm:read')
    assert.ok(payload.iat! >= before - 1)
    assert.equal(payload.nbf, payload.iat)
    assert.equal(payload.exp! - payload.iat!, 600)
    assert.equal(r.body.expires_in, 600)
    assert.match(String(payload.jti), /^[0-9a-f-]{36}$/)
    assert.equal(payload.policy_version, 'none')
    assert.equal(payload.capability_hash, capabilityHash(buildManifest(['payments.transfer', 'crm.read'])))
    assert.equal(payload.capability_hash, s.agent.capability_hash)
    assert.equal(decodeProtectedHeader(r.body.access_token).kid, h.deps.keys.currentKid())
    const issued = await h.events('token.issued')
    const ev = issued.find((e) => e.subject === payload.jti)
    assert.ok(ev, 'token.issued event written')
    assert.equal(ev.tenant, 'acme')
    assert.equal(ev.data.exp, payload.exp)
    assert.ok(!JSON.stringify(ev).includes(r.body.access_token.split('.')[2]), 'the audit event never holds the token')
  })

  test('audience and resource (repeated) pick registered audiences; lifetime is capped by the agent', async () => {
    const r = await form(
      h,
      '/oauth2/token',
      { grant_type: 'client_credentials', resource: ['https://tools.example/crm'], audience: 'aegis-gateway' },
      { authorization: basic(s.clientId, s.secret) },
    )
    assert.equal(r.status, 200, r.text)
    const payload = JSON.parse(Buffer.from(r.body.access_token.split('.')[1], 'base64url').toString())
    assert.deepEqual([...payload.aud].sort(), ['aegis-gateway', 'https://tools.example/crm'])

    const short = await seedAgent(h, { agent: 'short-lived', agentBody: { max_ttl_seconds: 120 } })
    const r2 = await form(h, '/oauth2/token', { grant_type: 'client_credentials', client_id: short.clientId, client_secret: short.secret })
    assert.equal(r2.status, 200)
    assert.equal(r2.body.expires_in, 120)
    const p2 = JSON.parse(Buffer.from(r2.body.access_token.split('.')[1], 'base64url').toString())
    assert.equal(p2.exp - p2.iat, 120)
  })

  test('a single-use credential mints exactly one token', async () => {
    const one = await seedAgent(h, { agent: 'once-bot', cred: { single_use: true } })
    const a = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(one.clientId, one.secret) })
    assert.equal(a.status, 200)
    const b = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(one.clientId, one.secret) })
    assert.equal(b.status, 401)
    assert.equal(b.body.error, 'invalid_client')
    const stored = await h.deps.store.credentials.get(one.clientId)
    assert.ok(stored?.usedAt !== null)
  })

  test("policy_version is the tenant's active bundle version, from activation on", async () => {
    const cedar = '@id("read")\npermit (principal, action == Action::"crm.read", resource);\n'
    const up = await admin(h, h.adminToken, 'POST', '/tenants/acme/policies', { version: '2026-11-28.1', cedar, mode: 'enforce' })
    assert.equal(up.status, 201, up.text)
    const claimsNow = async (): Promise<Record<string, unknown>> => {
      const r = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(s.clientId, s.secret) })
      assert.equal(r.status, 200)
      return JSON.parse(Buffer.from(r.body.access_token.split('.')[1], 'base64url').toString()) as Record<string, unknown>
    }
    assert.equal((await claimsNow()).policy_version, 'none')
    const act = await admin(h, h.adminToken, 'POST', `/tenants/acme/policies/${up.body.id}/activate`)
    assert.equal(act.status, 200, act.text)
    assert.equal((await claimsNow()).policy_version, '2026-11-28.1')
  })

  test('issuance feeds metrics and KPIs', async () => {
    const m = await (await fetch(`${h.url}/metrics`)).text()
    assert.match(m, /aegis_tokens_issued_total\{grant="client_credentials"\} \d+/)
    assert.match(m, /aegis_token_lifetime_seconds_count \d+/)
    const k = await admin(h, h.adminToken, 'GET', '/kpis')
    assert.equal(k.status, 200)
    assert.ok(k.body.issuance_tps > 0)
    assert.ok(k.body.avg_token_lifetime_seconds > 0 && k.body.avg_token_lifetime_seconds <= 600)
    for (const f of ['revocations', 'replay_attempts']) assert.equal(typeof k.body[f], 'number')
    assert.deepEqual(typeof k.body.decisions, 'object')
    assert.deepEqual(typeof k.body.would_deny, 'object')
    const hz = await fetch(`${h.url}/healthz`)
    assert.equal(hz.status, 200)
  })
})
