import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as oidc from 'openid-client'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { freshPostgresSchema, skipWithoutPostgres } from '../../helpers/services.js'
import { admin, basic, form, seedAgent, startControlPlane } from './harness.js'

const skip = await skipWithoutPostgres()

test('core flow on PostgreSQL (fresh schema): register, mint, verify, introspect, revoke', { skip }, async () => {
  const schema = await freshPostgresSchema()
  const h = await startControlPlane({ databaseUrl: schema.url })
  try {
    assert.equal(h.deps.store.kind, 'postgres')
    const s = await seedAgent(h, { cred: { single_use: false } })
    const config = await oidc.discovery(new URL(h.url), s.clientId, undefined, oidc.ClientSecretBasic(s.secret), {
      execute: [oidc.allowInsecureRequests],
      algorithm: 'oauth2',
    })
    const tokens = await oidc.clientCredentialsGrant(config, { scope: 'payments:write' })
    const { payload } = await jwtVerify(tokens.access_token, createRemoteJWKSet(new URL(`${h.url}/.well-known/jwks.json`)), {
      issuer: h.url,
      audience: 'aegis-gateway',
      typ: 'at+jwt',
    })
    assert.equal(payload.tenant, 'acme')
    assert.equal(payload.capability_hash, s.agent.capability_hash)
    const issued = await h.events('token.issued')
    assert.ok(issued.some((e) => e.subject === payload.jti))

    const one = await seedAgent(h, { agent: 'once', cred: { single_use: true } })
    const results = await Promise.all(
      Array.from({ length: 5 }, () => form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(one.clientId, one.secret) })),
    )
    assert.equal(results.filter((r) => r.status === 200).length, 1)

    const active = await form(h, '/oauth2/introspect', { token: tokens.access_token }, { authorization: `Bearer ${h.gatewayToken}` })
    assert.equal(active.body.active, true)
    const revoked = await form(h, '/oauth2/revoke', { token: tokens.access_token }, { authorization: basic(s.clientId, s.secret) })
    assert.equal(revoked.status, 200)
    const inactive = await form(h, '/oauth2/introspect', { token: tokens.access_token }, { authorization: `Bearer ${h.gatewayToken}` })
    assert.deepEqual(inactive.body, { active: false })
    const crossing = await admin(
      h,
      (await admin(h, h.adminToken, 'POST', '/admin-tokens', { tenant: 'acme', role: 'admin' })).body.token,
      'GET',
      '/tenants/other',
    )
    assert.equal(crossing.status, 403)
  } finally {
    await h.close()
    await schema.drop()
  }
})
