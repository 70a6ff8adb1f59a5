import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { SignJWT, exportJWK, generateKeyPair, decodeJwt, type CryptoKey } from 'jose'
import { startCredentialEnv, tenantId, type CredentialEnv } from './harness.js'

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'

describe('private_key_jwt client authentication (RFC 7523)', () => {
  let env: CredentialEnv
  let clientId: string
  let key: CryptoKey
  let unregistered: CryptoKey
  const tenant = tenantId()

  before(async () => {
    env = await startCredentialEnv()
    const kp = await generateKeyPair('EdDSA', { crv: 'Ed25519' })
    key = kp.privateKey
    unregistered = (await generateKeyPair('EdDSA', { crv: 'Ed25519' })).privateKey
    const jwk = { ...(await exportJWK(kp.publicKey)), kid: 'k1', alg: 'EdDSA', use: 'sig' }
    await env.admin('POST', '/tenants', { id: tenant, name: 'pkjwt' })
    clientId = (
      await env.admin('POST', `/tenants/${tenant}/agents`, {
        agent_id: 'signer',
        scopes: ['crm:read'],
        capabilities: ['crm.read'],
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [jwk] },
      })
    ).client_id
  })
  after(async () => {
    await env.close()
  })

  const assertion = (o: { aud?: string; exp?: number; jti?: string; with?: CryptoKey; iss?: string } = {}) => {
    const now = Math.floor(Date.now() / 1000)
    return new SignJWT({ jti: o.jti ?? randomUUID() })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
      .setIssuer(o.iss ?? clientId)
      .setSubject(clientId)
      .setAudience(o.aud ?? `${env.url}/oauth2/token`)
      .setIssuedAt(now)
      .setExpirationTime(o.exp ?? now + 60)
      .sign(o.with ?? key)
  }
  const token = (jwt: string, extra: Record<string, string> = {}) =>
    env.form(`${env.url}/oauth2/token`, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: jwt, ...extra })

  test('a fresh assertion signed with the registered key gets a token (client_id optional)', async () => {
    const r = await token(await assertion())
    assert.equal(r.status, 200, r.text)
    assert.equal(decodeJwt(r.body.access_token).client_id, clientId)
    const withId = await token(await assertion(), { client_id: clientId })
    assert.equal(withId.status, 200, withId.text)
  })

  test('the issuer URL is also accepted as audience', async () => {
    const r = await token(await assertion({ aud: env.url }))
    assert.equal(r.status, 200, r.text)
  })

  test('a replayed assertion is refused', async () => {
    const jwt = await assertion()
    assert.equal((await token(jwt)).status, 200)
    const again = await token(jwt)
    assert.equal(again.status, 401)
    assert.equal(again.body.error, 'invalid_client')
    const failed = await env.events('auth.failed')
    assert.ok(failed.some((e) => e.data.reason === 'replayed'))
  })

  test('a wrong audience is refused', async () => {
    const r = await token(await assertion({ aud: 'https://elsewhere.example/oauth2/token' }))
    assert.equal(r.status, 401)
    assert.equal(r.body.error, 'invalid_client')
  })

  test('an expired assertion, or one valid for too long, is refused', async () => {
    const now = Math.floor(Date.now() / 1000)
    assert.equal((await token(await assertion({ exp: now - 120 }))).status, 401)
    assert.equal((await token(await assertion({ exp: now + 3600 }))).status, 401)
  })

  test('an assertion signed with an unregistered key is refused', async () => {
    const r = await token(await assertion({ with: unregistered }))
    assert.equal(r.status, 401)
    assert.equal(r.body.error, 'invalid_client')
  })

  test('client_id differing from the assertion issuer, or an assertion together with a secret, is refused', async () => {
    const r = await token(await assertion(), { client_id: 'ag_someoneelse' })
    assert.equal(r.status, 401)
    const both = await token(await assertion(), { client_id: clientId, client_secret: 'x' })
    assert.equal(both.status, 400)
    assert.equal(both.body.error, 'invalid_request')
  })

  test('the agent cannot fall back to a bootstrap secret', async () => {
    const cred = await env.admin(
      'POST',
      `/tenants/${tenant}/agents/signer/bootstrap-credentials`,
      { ttl_seconds: 600, single_use: false },
      [201, 200, 400, 409],
    )
    if (cred?.client_secret) {
      const r = await env.form(`${env.url}/oauth2/token`, { grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret })
      assert.equal(r.status, 401)
    }
  })
})
