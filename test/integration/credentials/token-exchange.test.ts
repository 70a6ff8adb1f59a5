import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import { randomUUID } from 'node:crypto'
import { SignJWT, decodeJwt, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose'
import { startCredentialEnv, tenantId, type CredentialEnv } from './harness.js'

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt'

/** A small workload-identity issuer: OIDC discovery + JWKS, signing Kubernetes- and CI-shaped tokens with RS256. */
class WorkloadIssuer {
  server: Server
  url = ''
  key!: CryptoKey
  jwk!: JWK
  jwksHits = 0
  constructor() {
    this.server = createServer((req, res) => {
      if (req.url === '/keys') {
        this.jwksHits++
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ keys: [this.jwk] }))
        return
      }
      res.statusCode = 404
      res.end()
    })
  }
  async start(): Promise<void> {
    const kp = await generateKeyPair('RS256')
    this.key = kp.privateKey
    this.jwk = { ...(await exportJWK(kp.publicKey)), kid: 'wi-1', alg: 'RS256', use: 'sig' }
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r))
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`
  }
  sign(claims: Record<string, unknown>, o: { aud?: string; exp?: number; iss?: string; key?: CryptoKey } = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000)
    return new SignJWT({ ...claims, jti: randomUUID() })
      .setProtectedHeader({ alg: 'RS256', kid: 'wi-1', typ: 'JWT' })
      .setIssuer(o.iss ?? this.url)
      .setAudience(o.aud ?? 'aegis')
      .setIssuedAt(now)
      .setExpirationTime(o.exp ?? now + 300)
      .sign(o.key ?? this.key)
  }
  close(): Promise<void> {
    return new Promise((r) => {
      this.server.closeAllConnections()
      this.server.close(() => r())
    })
  }
}

describe('workload identity by token exchange (RFC 8693)', () => {
  let env: CredentialEnv
  const k8s = new WorkloadIssuer()
  const ci = new WorkloadIssuer()
  const tenant = tenantId()
  const attested = tenantId()
  const K8S_SUB = 'system:serviceaccount:payments:billing-agent'

  before(async () => {
    env = await startCredentialEnv()
    await k8s.start()
    await ci.start()
    await env.admin('POST', '/tenants', { id: tenant, name: 'workloads' })
    await env.admin('POST', '/tenants', { id: attested, name: 'attested', require_attestation: true })
    for (const t of [tenant, attested]) {
      await env.admin('POST', `/tenants/${t}/agents`, {
        agent_id: 'billing',
        scopes: ['crm:read', 'payments:write'],
        capabilities: ['crm.read'],
        max_ttl_seconds: 3600,
      })
      await env.admin('POST', `/tenants/${t}/agents`, { agent_id: 'deployer', scopes: ['crm:read'], capabilities: ['crm.read'] })
    }
    await env.admin('POST', `/tenants/${tenant}/trusted-issuers`, {
      issuer: k8s.url,
      jwks_uri: `${k8s.url}/keys`,
      audience: 'aegis',
      rules: [{ claims: { sub: K8S_SUB }, agent_id: 'billing' }],
    })
    await env.admin('POST', `/tenants/${tenant}/trusted-issuers`, {
      issuer: ci.url,
      jwks: { keys: [ci.jwk] },
      audience: 'aegis',
      rules: [{ claims: { repository: 'acme/deploy', ref: 'refs/heads/main' }, agent_id: 'deployer' }],
    })
    await env.admin('POST', `/tenants/${attested}/trusted-issuers`, {
      issuer: k8s.url,
      jwks_uri: `${k8s.url}/keys`,
      audience: 'aegis-attested',
      rules: [{ claims: { sub: K8S_SUB }, agent_id: 'billing' }],
    })
  })
  after(async () => {
    await env.close()
    await k8s.close()
    await ci.close()
  })

  const exchange = (subject: string, extra: Record<string, string> = {}) =>
    env.form(`${env.url}/oauth2/token`, { grant_type: GRANT, subject_token: subject, subject_token_type: JWT_TYPE, ...extra })

  test('a Kubernetes service-account token matching the rule yields an access token for the agent, no secret involved', async () => {
    const subject = await k8s.sign({ sub: K8S_SUB, 'kubernetes.io': { namespace: 'payments' } })
    const r = await exchange(subject, { scope: 'crm:read' })
    assert.equal(r.status, 200, r.text)
    assert.equal(r.body.issued_token_type, 'urn:ietf:params:oauth:token-type:access_token')
    assert.equal(r.body.token_type, 'Bearer')
    const claims = decodeJwt(r.body.access_token)
    assert.equal(claims.agent_id, 'billing')
    assert.equal(claims.tenant, tenant)
    assert.equal(claims.scope, 'crm:read')
    const issued = (await env.events('token.issued')).find((e) => e.data.jti === claims.jti)
    assert.ok(issued)
    assert.equal(issued.data.grant_type, GRANT)
    assert.equal(issued.data.subject_issuer, k8s.url)
    assert.equal(issued.data.subject, K8S_SUB)
  })

  test('the id_token subject type is accepted too', async () => {
    const r = await exchange(await k8s.sign({ sub: K8S_SUB }), { subject_token_type: 'urn:ietf:params:oauth:token-type:id_token' })
    assert.equal(r.status, 200, r.text)
  })

  test('a CI OIDC token matching repository and ref yields a token for the deployer (inline JWKS)', async () => {
    const r = await exchange(await ci.sign({ sub: 'repo:acme/deploy:ref:refs/heads/main', repository: 'acme/deploy', ref: 'refs/heads/main' }))
    assert.equal(r.status, 200, r.text)
    assert.equal(decodeJwt(r.body.access_token).agent_id, 'deployer')
  })

  test('the minted token never outlives the subject token', async () => {
    const exp = Math.floor(Date.now() / 1000) + 45
    const r = await exchange(await k8s.sign({ sub: K8S_SUB }, { exp }))
    assert.equal(r.status, 200, r.text)
    assert.ok(r.body.expires_in <= 45, `expires_in ${r.body.expires_in}`)
    assert.ok((decodeJwt(r.body.access_token).exp as number) <= exp)
  })

  test('wrong audience is refused', async () => {
    const r = await exchange(await k8s.sign({ sub: K8S_SUB }, { aud: 'someone-else' }))
    assert.equal(r.status, 400)
    assert.equal(r.body.error, 'invalid_grant')
  })

  test('an expired subject token is refused', async () => {
    const r = await exchange(await k8s.sign({ sub: K8S_SUB }, { exp: Math.floor(Date.now() / 1000) - 300 }))
    assert.equal(r.status, 400)
    assert.equal(r.body.error, 'invalid_grant')
  })

  test('an unknown issuer is refused, and so is a trusted issuer name signed with another key', async () => {
    const rogue = new WorkloadIssuer()
    await rogue.start()
    try {
      const unknown = await exchange(await rogue.sign({ sub: K8S_SUB }))
      assert.equal(unknown.status, 400)
      assert.equal(unknown.body.error, 'invalid_grant')
      const forged = await exchange(await rogue.sign({ sub: K8S_SUB }, { iss: k8s.url }))
      assert.equal(forged.status, 400)
      assert.equal(forged.body.error, 'invalid_grant')
    } finally {
      await rogue.close()
    }
  })

  test('claims not matching any rule are refused', async () => {
    const other = await exchange(await k8s.sign({ sub: 'system:serviceaccount:payments:other' }))
    assert.equal(other.status, 400)
    assert.equal(other.body.error, 'invalid_grant')
    const branch = await exchange(await ci.sign({ repository: 'acme/deploy', ref: 'refs/heads/feature', sub: 'x' }))
    assert.equal(branch.status, 400)
    assert.equal(branch.body.error, 'invalid_grant')
  })

  test('a malformed exchange request is refused with invalid_request', async () => {
    const subject = await k8s.sign({ sub: K8S_SUB })
    assert.equal((await exchange(subject, { subject_token_type: 'urn:ietf:params:oauth:token-type:saml2' })).body.error, 'invalid_request')
    assert.equal((await env.form(`${env.url}/oauth2/token`, { grant_type: GRANT, subject_token_type: JWT_TYPE })).body.error, 'invalid_request')
    assert.equal((await exchange('not-a-jwt')).body.error, 'invalid_grant')
  })

  test('an attestation-required tenant refuses bootstrap secrets and accepts workload identity', async () => {
    const cred = await env.admin(
      'POST',
      `/tenants/${attested}/agents/billing/bootstrap-credentials`,
      { ttl_seconds: 600, single_use: false },
      [200, 201, 400, 409],
    )
    if (cred?.client_secret) {
      const r = await env.form(`${env.url}/oauth2/token`, { grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret })
      assert.equal(r.status, 401)
      assert.equal(r.body.error, 'invalid_client')
      const failed = await env.events('auth.failed')
      assert.ok(failed.some((e) => e.data.reason === 'attestation_required' && e.tenant === attested))
    }
    const ok = await exchange(await k8s.sign({ sub: K8S_SUB }, { aud: 'aegis-attested' }))
    assert.equal(ok.status, 200, ok.text)
    assert.equal(decodeJwt(ok.body.access_token).tenant, attested)
  })
})
