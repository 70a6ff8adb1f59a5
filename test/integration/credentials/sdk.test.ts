import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SignJWT, decodeJwt, exportJWK, generateKeyPair } from 'jose'
import {
  AegisClient,
  DpopKey,
  PrivateKeyJwtSource,
  TlsClientAuthSource,
  TokenExchangeSource,
  discoverMtlsTokenEndpoint,
  mtlsFetch,
  publicJwk,
  subjectTokenFile,
} from '../../../src/sdk/index.js'
import { makeLeaf } from './pki.js'
import { startCredentialEnv, tenantId, type CredentialEnv } from './harness.js'

describe('aegis/sdk with stronger credentials against the real control plane and gateway', () => {
  let env: CredentialEnv
  let gw: { url: string; tlsUrl: string }
  const tenant = tenantId()

  before(async () => {
    env = await startCredentialEnv({ overrides: { dpop: { requireNonce: true, nonceSecret: 'sdk-test-shared-nonce-secret-0123' } } })
    await env.admin('POST', '/tenants', { id: tenant, name: 'sdk' })
    gw = await env.startGateway()
  })
  after(async () => {
    await env.close()
  })

  test('DPoP: proofs on the token request and on every gateway call, nonces fetched and retried by the SDK', async () => {
    await env.admin('POST', `/tenants/${tenant}/agents`, { agent_id: 'dp', scopes: ['crm:read'], capabilities: ['crm.read'] })
    const cred = await env.admin('POST', `/tenants/${tenant}/agents/dp/bootstrap-credentials`, { ttl_seconds: 600, single_use: false })
    const key = DpopKey.generate('ES256')
    const client = new AegisClient({ issuer: env.url, clientId: cred.client_id, clientSecret: cred.client_secret, gatewayUrl: gw.url, fetch: key.fetch() })
    try {
      const at = await client.tokenSource.getAccessToken()
      assert.equal(at.tokenType, 'DPoP')
      assert.ok((decodeJwt(at.accessToken).cnf as { jkt?: string }).jkt)
      const d = await client.authorize({ tool: 'crm.read', params: {} })
      assert.equal(d.decision, 'allow')
      const again = await client.authorize({ tool: 'crm.read', params: {} })
      assert.equal(again.decision, 'allow')
      // Without the key the same token is refused.
      const bare = await fetch(`${gw.url}/v1/authorize`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${at.accessToken}` },
        body: JSON.stringify({ action: { tool: 'crm.read' } }),
      })
      assert.equal(bare.status, 401)
    } finally {
      client.close()
    }
  })

  test('private_key_jwt: each token request carries a fresh assertion', async () => {
    const { privateKey } = generateKeyPairSync('ed25519')
    const jwk = { ...publicJwk(privateKey), kid: 'sdk-1', alg: 'EdDSA', use: 'sig' }
    const clientId = (
      await env.admin('POST', `/tenants/${tenant}/agents`, {
        agent_id: 'pk',
        scopes: ['crm:read'],
        capabilities: ['crm.read'],
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [jwk] },
      })
    ).client_id
    const source = new PrivateKeyJwtSource({ issuer: env.url, clientId, privateKey, kid: 'sdk-1' })
    try {
      const a = await source.getToken()
      const b = await source.getToken({ forceRefresh: true })
      assert.notEqual(a, b)
      assert.equal(decodeJwt(b).client_id, clientId)
    } finally {
      source.close()
    }
  })

  test('mTLS: tls_client_auth at the mTLS alias, certificate-bound token accepted at the gateway TLS port', async () => {
    const clientId = (
      await env.admin('POST', `/tenants/${tenant}/agents`, {
        agent_id: 'mt',
        scopes: ['crm:read'],
        capabilities: ['crm.read'],
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_san_uri: 'spiffe://acme.test/sdk',
      })
    ).client_id
    const cert = makeLeaf(env.pki.ca, 'sdk', { subject: '/CN=sdk', san: ['URI:spiffe://acme.test/sdk'] })
    const f = mtlsFetch({ cert: cert.certFile, key: cert.keyFile, ca: env.pki.ca.certFile })
    const tokenEndpoint = await discoverMtlsTokenEndpoint(env.url)
    assert.equal(tokenEndpoint, `${env.tlsUrl}/oauth2/token`)
    const source = new TlsClientAuthSource({ issuer: env.url, clientId, tokenEndpoint, fetch: f })
    const client = new AegisClient({ issuer: env.url, tokenSource: source, gatewayUrl: gw.tlsUrl, fetch: f })
    try {
      const d = await client.authorize({ tool: 'crm.read', params: {} })
      assert.equal(d.decision, 'allow')
      assert.ok((decodeJwt(await source.getToken()).cnf as Record<string, string>)['x5t#S256'])
    } finally {
      client.close()
      source.close()
      f.close()
    }
  })

  test('token exchange from a projected service-account token file', async () => {
    await env.admin('POST', `/tenants/${tenant}/agents`, { agent_id: 'wl', scopes: ['crm:read'], capabilities: ['crm.read'] })
    const kp = await generateKeyPair('ES256')
    const jwk = { ...(await exportJWK(kp.publicKey)), kid: 'k8s', alg: 'ES256' }
    const iss = 'https://kubernetes.default.svc.cluster.local'
    await env.admin('POST', `/tenants/${tenant}/trusted-issuers`, {
      issuer: iss,
      jwks: { keys: [jwk] },
      audience: 'aegis',
      rules: [{ claims: { sub: 'system:serviceaccount:ns:wl' }, agent_id: 'wl' }],
    })
    const dir = mkdtempSync(join(tmpdir(), 'aegis-sa-'))
    const file = join(dir, 'token')
    const now = Math.floor(Date.now() / 1000)
    writeFileSync(
      file,
      await new SignJWT({ sub: 'system:serviceaccount:ns:wl' })
        .setProtectedHeader({ alg: 'ES256', kid: 'k8s' })
        .setIssuer(iss)
        .setAudience('aegis')
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        .sign(kp.privateKey),
    )
    const source = new TokenExchangeSource({ issuer: env.url, subjectToken: subjectTokenFile(file) })
    try {
      const at = await source.getAccessToken()
      assert.equal(at.issuedTokenType, 'urn:ietf:params:oauth:token-type:access_token')
      assert.equal(decodeJwt(at.accessToken).agent_id, 'wl')
    } finally {
      source.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
