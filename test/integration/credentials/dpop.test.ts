import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { SignJWT, calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose'
import { startCredentialEnv, tenantId, type CredentialEnv } from './harness.js'

interface Holder {
  key: CryptoKey
  jwk: JWK
  jkt: string
}

async function holder(): Promise<Holder> {
  const kp = await generateKeyPair('ES256')
  const jwk = await exportJWK(kp.publicKey)
  return { key: kp.privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') }
}

export function proof(h: Holder, htm: string, htu: string, o: { iat?: number; jti?: string; nonce?: string; ath?: string } = {}): Promise<string> {
  return new SignJWT({ htm, htu, jti: o.jti ?? randomUUID(), ...(o.nonce ? { nonce: o.nonce } : {}), ...(o.ath ? { ath: o.ath } : {}) })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: h.jwk })
    .setIssuedAt(o.iat ?? Math.floor(Date.now() / 1000))
    .sign(h.key)
}

describe('DPoP-bound tokens at the token endpoint (RFC 9449)', () => {
  let env: CredentialEnv
  let cred: { client_id: string; client_secret: string }
  let h: Holder
  const tenant = tenantId()
  let endpoint: string

  before(async () => {
    env = await startCredentialEnv()
    endpoint = `${env.url}/oauth2/token`
    h = await holder()
    await env.admin('POST', '/tenants', { id: tenant, name: 'dpop' })
    await env.admin('POST', `/tenants/${tenant}/agents`, { agent_id: 'a', scopes: ['crm:read'], capabilities: ['crm.read'] })
    cred = await env.admin('POST', `/tenants/${tenant}/agents/a/bootstrap-credentials`, { ttl_seconds: 600, single_use: false })
  })
  after(async () => {
    await env.close()
  })

  const token = (dpop?: string) =>
    env.form(endpoint, { grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret }, dpop ? { headers: { dpop } } : {})

  test('a valid proof binds the token to the proof key (cnf.jkt, token_type DPoP)', async () => {
    const r = await token(await proof(h, 'POST', endpoint))
    assert.equal(r.status, 200, r.text)
    assert.equal(r.body.token_type, 'DPoP')
    assert.deepEqual(decodeJwt(r.body.access_token).cnf, { jkt: h.jkt })
  })

  test('introspection reports the DPoP binding (cnf.jkt, token_type DPoP)', async () => {
    const r = await token(await proof(h, 'POST', endpoint))
    const i = await env.form(`${env.url}/oauth2/introspect`, { token: r.body.access_token }, { headers: { authorization: `Bearer ${env.gatewayToken}` } })
    assert.equal(i.status, 200, i.text)
    assert.equal(i.body.active, true)
    assert.equal(i.body.token_type, 'DPoP')
    assert.deepEqual(i.body.cnf, { jkt: h.jkt })
  })

  test('the query and fragment of htu are ignored', async () => {
    const r = await token(await proof(h, 'POST', `${endpoint}?x=1#frag`))
    assert.equal(r.status, 200, r.text)
  })

  test('wrong method or URL is refused with invalid_dpop_proof', async () => {
    const m = await token(await proof(h, 'GET', endpoint))
    assert.equal(m.status, 400)
    assert.equal(m.body.error, 'invalid_dpop_proof')
    const u = await token(await proof(h, 'POST', 'https://elsewhere.example/oauth2/token'))
    assert.equal(u.status, 400)
    assert.equal(u.body.error, 'invalid_dpop_proof')
  })

  test('a reused proof is refused', async () => {
    const p = await proof(h, 'POST', endpoint)
    assert.equal((await token(p)).status, 200)
    const again = await token(p)
    assert.equal(again.status, 400)
    assert.equal(again.body.error, 'invalid_dpop_proof')
  })

  test('a stale or future iat is refused', async () => {
    const now = Math.floor(Date.now() / 1000)
    const stale = await token(await proof(h, 'POST', endpoint, { iat: now - 600 }))
    assert.equal(stale.status, 400)
    assert.equal(stale.body.error, 'invalid_dpop_proof')
    const future = await token(await proof(h, 'POST', endpoint, { iat: now + 600 }))
    assert.equal(future.status, 400)
  })

  test('a proof carrying a private key, a symmetric alg or the wrong typ is refused', async () => {
    const kp = await generateKeyPair('ES256', { extractable: true })
    const priv = await exportJWK(kp.privateKey)
    const leaky = await new SignJWT({ htm: 'POST', htu: endpoint, jti: randomUUID() })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: priv })
      .setIssuedAt()
      .sign(kp.privateKey)
    assert.equal((await token(leaky)).status, 400)
    const hs = await new SignJWT({ htm: 'POST', htu: endpoint, jti: randomUUID() })
      .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt' })
      .setIssuedAt()
      .sign(new Uint8Array(32))
    assert.equal((await token(hs)).status, 400)
    const typ = await new SignJWT({ htm: 'POST', htu: endpoint, jti: randomUUID() })
      .setProtectedHeader({ alg: 'ES256', typ: 'jwt', jwk: h.jwk })
      .setIssuedAt()
      .sign(h.key)
    assert.equal((await token(typ)).status, 400)
  })
})

describe('DPoP server nonces', () => {
  let env: CredentialEnv
  let cred: { client_id: string; client_secret: string }
  const tenant = tenantId()

  before(async () => {
    env = await startCredentialEnv({ overrides: { dpop: { requireNonce: true, nonceSecret: 'a-shared-secret-for-all-instances' } } })
    await env.admin('POST', '/tenants', { id: tenant, name: 'dpop nonce' })
    await env.admin('POST', `/tenants/${tenant}/agents`, { agent_id: 'a', scopes: ['crm:read'], capabilities: ['crm.read'] })
    cred = await env.admin('POST', `/tenants/${tenant}/agents/a/bootstrap-credentials`, { ttl_seconds: 600, single_use: false })
  })
  after(async () => {
    await env.close()
  })

  test('a proof without a nonce gets use_dpop_nonce and a DPoP-Nonce; the retry with it succeeds; a forged nonce fails', async () => {
    const h = await holder()
    const endpoint = `${env.url}/oauth2/token`
    const params = { grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret }
    const first = await env.form(endpoint, params, { headers: { dpop: await proof(h, 'POST', endpoint) } })
    assert.equal(first.status, 400)
    assert.equal(first.body.error, 'use_dpop_nonce')
    const nonce = first.headers['dpop-nonce']
    assert.equal(typeof nonce, 'string')
    const second = await env.form(endpoint, params, { headers: { dpop: await proof(h, 'POST', endpoint, { nonce: nonce as string }) } })
    assert.equal(second.status, 200, second.text)
    assert.equal(second.body.token_type, 'DPoP')
    const forged = await env.form(endpoint, params, {
      headers: { dpop: await proof(h, 'POST', endpoint, { nonce: `${(nonce as string).split('.')[0]}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA` }) },
    })
    assert.equal(forged.status, 400)
    assert.equal(forged.body.error, 'use_dpop_nonce')
  })
})
