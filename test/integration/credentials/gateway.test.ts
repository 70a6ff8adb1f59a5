import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomUUID } from 'node:crypto'
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose'
import { makeLeaf, type Issued } from './pki.js'
import { startCredentialEnv, tenantId, type CredentialEnv, type Reply } from './harness.js'

interface Holder {
  key: CryptoKey
  jwk: JWK
  jkt: string
}
async function holder(): Promise<Holder> {
  const kp = await generateKeyPair('EdDSA', { crv: 'Ed25519' })
  const jwk = await exportJWK(kp.publicKey)
  return { key: kp.privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') }
}
function proof(h: Holder, htm: string, htu: string, o: { iat?: number; jti?: string; nonce?: string; token?: string } = {}): Promise<string> {
  const ath = o.token ? createHash('sha256').update(o.token).digest('base64url') : undefined
  return new SignJWT({ htm, htu, jti: o.jti ?? randomUUID(), ...(o.nonce ? { nonce: o.nonce } : {}), ...(ath ? { ath } : {}) })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'dpop+jwt', jwk: h.jwk })
    .setIssuedAt(o.iat ?? Math.floor(Date.now() / 1000))
    .sign(h.key)
}

const ACTION = JSON.stringify({ action: { tool: 'crm.read', params: {} } })

describe('gateway: certificate-bound and DPoP-bound tokens', () => {
  let env: CredentialEnv
  let gw: { url: string; tlsUrl: string }
  let proxied: { url: string }
  const tenant = tenantId()
  let certAgent: string
  let cert: Issued
  let otherCert: Issued
  let cred: { client_id: string; client_secret: string }

  before(async () => {
    env = await startCredentialEnv()
    await env.admin('POST', '/tenants', { id: tenant, name: 'gateway binding' })
    certAgent = (
      await env.admin('POST', `/tenants/${tenant}/agents`, {
        agent_id: 'm',
        scopes: ['crm:read'],
        capabilities: ['crm.read'],
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_san_uri: 'spiffe://acme.test/m',
      })
    ).client_id
    await env.admin('POST', `/tenants/${tenant}/agents`, { agent_id: 'd', scopes: ['crm:read'], capabilities: ['crm.read'] })
    cred = await env.admin('POST', `/tenants/${tenant}/agents/d/bootstrap-credentials`, { ttl_seconds: 600, single_use: false })
    cert = makeLeaf(env.pki.ca, 'm', { subject: '/CN=m', san: ['URI:spiffe://acme.test/m'] })
    otherCert = makeLeaf(env.pki.ca, 'm2', { subject: '/CN=m', san: ['URI:spiffe://acme.test/m'] })
    gw = await env.startGateway()
    proxied = await env.startGateway({
      tls: { cert: env.pki.server.certFile, key: env.pki.server.keyFile, trustedProxies: ['127.0.0.2'], clientCertHeader: 'x-forwarded-client-cert' },
    })
  })
  after(async () => {
    await env.close()
  })

  const authorize = (base: string, headers: Record<string, string>, o: { cert?: Issued; localAddress?: string } = {}): Promise<Reply> =>
    env.call(`${base}/v1/authorize`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: ACTION, ...o })

  async function certToken(): Promise<string> {
    const r = await env.form(`${env.tlsUrl}/oauth2/token`, { grant_type: 'client_credentials', client_id: certAgent }, { cert })
    assert.equal(r.status, 200, r.text)
    return r.body.access_token
  }

  async function dpopToken(h: Holder): Promise<string> {
    const endpoint = `${env.url}/oauth2/token`
    const r = await env.form(
      endpoint,
      { grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret },
      { headers: { dpop: await proof(h, 'POST', endpoint) } },
    )
    assert.equal(r.status, 200, r.text)
    assert.equal(r.body.token_type, 'DPoP')
    return r.body.access_token
  }

  test('a certificate-bound token works at the gateway TLS port with its certificate', async () => {
    const t = await certToken()
    const r = await authorize(gw.tlsUrl, { authorization: `Bearer ${t}` }, { cert })
    assert.equal(r.status, 200, r.text)
    assert.ok(['allow', 'deny', 'approval_needed', 'sanitize'].includes(r.body.decision))
  })

  test('a certificate-bound token replayed without the certificate, with another one, or over plain HTTP gets 401 invalid_token', async () => {
    const t = await certToken()
    for (const r of [
      await authorize(gw.tlsUrl, { authorization: `Bearer ${t}` }),
      await authorize(gw.tlsUrl, { authorization: `Bearer ${t}` }, { cert: otherCert }),
      await authorize(gw.url, { authorization: `Bearer ${t}` }),
    ]) {
      assert.equal(r.status, 401, r.text)
      assert.equal(r.body.error, 'invalid_token')
      assert.match(String(r.headers['www-authenticate']), /^Bearer error="invalid_token"/)
    }
  })

  test('behind a TLS-terminating proxy the certificate counts only from the trusted proxy address', async () => {
    const t = await certToken()
    const xfcc = `Hash=00;Cert="${encodeURIComponent(cert.certPem)}"`
    const trusted = await authorize(proxied.url, { authorization: `Bearer ${t}`, 'x-forwarded-client-cert': xfcc }, { localAddress: '127.0.0.2' })
    assert.equal(trusted.status, 200, trusted.text)
    const spoofed = await authorize(proxied.url, { authorization: `Bearer ${t}`, 'x-forwarded-client-cert': xfcc })
    assert.equal(spoofed.status, 401)
    const wrong = await authorize(
      proxied.url,
      { authorization: `Bearer ${t}`, 'x-forwarded-client-cert': `Cert="${encodeURIComponent(otherCert.certPem)}"` },
      { localAddress: '127.0.0.2' },
    )
    assert.equal(wrong.status, 401)
  })

  test('a DPoP-bound token works with the DPoP scheme and a fresh proof of its key', async () => {
    const h = await holder()
    const t = await dpopToken(h)
    const r = await authorize(gw.url, { authorization: `DPoP ${t}`, dpop: await proof(h, 'POST', `${gw.url}/v1/authorize`, { token: t }) })
    assert.equal(r.status, 200, r.text)
  })

  test('a DPoP-bound token used as Bearer, without a proof, or with another key gets 401 and a DPoP challenge', async () => {
    const h = await holder()
    const other = await holder()
    const t = await dpopToken(h)
    const htu = `${gw.url}/v1/authorize`
    for (const r of [
      await authorize(gw.url, { authorization: `Bearer ${t}`, dpop: await proof(h, 'POST', htu, { token: t }) }),
      await authorize(gw.url, { authorization: `DPoP ${t}` }),
      await authorize(gw.url, { authorization: `DPoP ${t}`, dpop: await proof(other, 'POST', htu, { token: t }) }),
    ]) {
      assert.equal(r.status, 401, r.text)
      assert.equal(r.body.error, 'invalid_token')
      assert.match(String(r.headers['www-authenticate']), /^DPoP /)
    }
  })

  test('wrong method, wrong URL, missing ath, reused proof and stale iat are refused', async () => {
    const h = await holder()
    const t = await dpopToken(h)
    const htu = `${gw.url}/v1/authorize`
    const now = Math.floor(Date.now() / 1000)
    const reused = await proof(h, 'POST', htu, { token: t })
    assert.equal((await authorize(gw.url, { authorization: `DPoP ${t}`, dpop: reused })).status, 200)
    for (const r of [
      await authorize(gw.url, { authorization: `DPoP ${t}`, dpop: await proof(h, 'GET', htu, { token: t }) }),
      await authorize(gw.url, { authorization: `DPoP ${t}`, dpop: await proof(h, 'POST', `${gw.url}/v1/other`, { token: t }) }),
      await authorize(gw.url, { authorization: `DPoP ${t}`, dpop: await proof(h, 'POST', htu) }),
      await authorize(gw.url, { authorization: `DPoP ${t}`, dpop: reused }),
      await authorize(gw.url, { authorization: `DPoP ${t}`, dpop: await proof(h, 'POST', htu, { token: t, iat: now - 900 }) }),
    ]) {
      assert.equal(r.status, 401, r.text)
      assert.equal(r.body.error, 'invalid_token')
    }
    // The reused proof counts as a replay attempt in the control plane's KPIs (the other four are plain refusals).
    let kpis: Record<string, unknown> = {}
    for (let i = 0; i < 100; i++) {
      kpis = (await env.admin('GET', '/kpis')) as Record<string, unknown>
      if (kpis.replay_attempts === 1) break
      await new Promise((r) => setTimeout(r, 50))
    }
    assert.equal(kpis.replay_attempts, 1, JSON.stringify(kpis))
  })

  test('an unbound token presented with the DPoP scheme is refused', async () => {
    const r0 = await env.form(`${env.url}/oauth2/token`, { grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret })
    const t = r0.body.access_token as string
    const h = await holder()
    const r = await authorize(gw.url, { authorization: `DPoP ${t}`, dpop: await proof(h, 'POST', `${gw.url}/v1/authorize`, { token: t }) })
    assert.equal(r.status, 401)
    const ok = await authorize(gw.url, { authorization: `Bearer ${t}` })
    assert.equal(ok.status, 200, ok.text)
  })
})

describe('gateway: DPoP nonces shared with the control plane', () => {
  let env: CredentialEnv
  let gw: { url: string }
  let cred: { client_id: string; client_secret: string }
  const tenant = tenantId()

  before(async () => {
    env = await startCredentialEnv({ overrides: { dpop: { requireNonce: true, nonceSecret: 'shared-by-every-instance-0123456789' } } })
    await env.admin('POST', '/tenants', { id: tenant, name: 'nonce' })
    await env.admin('POST', `/tenants/${tenant}/agents`, { agent_id: 'd', scopes: ['crm:read'], capabilities: ['crm.read'] })
    cred = await env.admin('POST', `/tenants/${tenant}/agents/d/bootstrap-credentials`, { ttl_seconds: 600, single_use: false })
    gw = await env.startGateway()
  })
  after(async () => {
    await env.close()
  })

  test('a nonce from the control plane is accepted by the gateway; without one the gateway answers use_dpop_nonce with a DPoP-Nonce', async () => {
    const h = await holder()
    const endpoint = `${env.url}/oauth2/token`
    const params = { grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret }
    const first = await env.form(endpoint, params, { headers: { dpop: await proof(h, 'POST', endpoint) } })
    assert.equal(first.body.error, 'use_dpop_nonce')
    const nonce = first.headers['dpop-nonce'] as string
    const tok = await env.form(endpoint, params, { headers: { dpop: await proof(h, 'POST', endpoint, { nonce }) } })
    assert.equal(tok.status, 200, tok.text)
    const t = tok.body.access_token as string
    const htu = `${gw.url}/v1/authorize`
    const call = (dpop: string) =>
      env.call(htu, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `DPoP ${t}`, dpop }, body: ACTION })
    const noNonce = await call(await proof(h, 'POST', htu, { token: t }))
    assert.equal(noNonce.status, 401)
    assert.match(String(noNonce.headers['www-authenticate']), /^DPoP error="use_dpop_nonce"/)
    assert.equal(typeof noNonce.headers['dpop-nonce'], 'string')
    const withCpNonce = await call(await proof(h, 'POST', htu, { token: t, nonce }))
    assert.equal(withCpNonce.status, 200, withCpNonce.text)
    const withGwNonce = await call(await proof(h, 'POST', htu, { token: t, nonce: noNonce.headers['dpop-nonce'] as string }))
    assert.equal(withGwNonce.status, 200, withGwNonce.text)
  })
})
