/**
 * While an agent, client or tenant revocation holds, no grant mints a token
 * for it (docs/reference.md "Revocation"): bootstrap secret, DPoP-bound secret,
 * private_key_jwt, tls_client_auth and token exchange, with an OAuth error
 * and no token.issued event; lifting the entry lets every grant work again.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose'
import { makeLeaf, type Issued } from './pki.js'
import { startCredentialEnv, tenantId, type CredentialEnv, type Reply } from './harness.js'

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt'
const WORKLOAD_ISSUER = 'https://ci.workloads.example'
const SPIFFE = 'spiffe://acme.test/ns/prod/sa/cert-bot'

type Grant = 'secret' | 'dpop' | 'private_key_jwt' | 'tls_client_auth' | 'token_exchange' | 'token_exchange_authenticated'
const GRANTS: readonly Grant[] = ['secret', 'dpop', 'private_key_jwt', 'tls_client_auth', 'token_exchange', 'token_exchange_authenticated']

describe('a revoked agent, client or tenant gets no token from any grant until the entry is lifted', () => {
  let env: CredentialEnv
  const tenant = tenantId()
  let secretCred: { client_id: string; client_secret: string }
  let keyClientId: string
  let certClientId: string
  let signingKey: CryptoKey
  let workloadKey: CryptoKey
  let dpopKey: { key: CryptoKey; jwk: JWK }
  let cert: Issued
  let endpoint: string

  before(async () => {
    env = await startCredentialEnv()
    endpoint = `${env.url}/oauth2/token`
    await env.admin('POST', '/tenants', { id: tenant, name: 'revocation across grants' })
    const base = { scopes: ['crm:read'], capabilities: ['crm.read'] }
    await env.admin('POST', `/tenants/${tenant}/agents`, { agent_id: 'secret-bot', ...base })
    secretCred = await env.admin('POST', `/tenants/${tenant}/agents/secret-bot/bootstrap-credentials`, { ttl_seconds: 600, single_use: false })
    const kp = await generateKeyPair('EdDSA', { crv: 'Ed25519' })
    signingKey = kp.privateKey
    const jwk = { ...(await exportJWK(kp.publicKey)), kid: 'k1', alg: 'EdDSA', use: 'sig' }
    keyClientId = (
      await env.admin('POST', `/tenants/${tenant}/agents`, {
        agent_id: 'key-bot',
        ...base,
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [jwk] },
      })
    ).client_id
    certClientId = (
      await env.admin('POST', `/tenants/${tenant}/agents`, {
        agent_id: 'cert-bot',
        ...base,
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_san_uri: SPIFFE,
      })
    ).client_id
    cert = makeLeaf(env.pki.ca, 'cert-bot', { subject: '/CN=cert-bot/O=Acme', san: [`URI:${SPIFFE}`] })
    // Token exchange maps a CI token to secret-bot (inline JWKS: no key fetch involved).
    const wk = await generateKeyPair('ES256')
    workloadKey = wk.privateKey
    const wjwk = { ...(await exportJWK(wk.publicKey)), kid: 'wi', alg: 'ES256', use: 'sig' }
    await env.admin('POST', `/tenants/${tenant}/trusted-issuers`, {
      issuer: WORKLOAD_ISSUER,
      jwks: { keys: [wjwk] },
      audience: 'aegis',
      rules: [{ claims: { sub: 'repo:acme/bot' }, agent_id: 'secret-bot' }],
    })
    const dk = await generateKeyPair('ES256')
    dpopKey = { key: dk.privateKey, jwk: await exportJWK(dk.publicKey) }
  })
  after(async () => {
    await env.close()
  })

  const basic = (c: { client_id: string; client_secret: string }): string =>
    `Basic ${Buffer.from(`${encodeURIComponent(c.client_id)}:${encodeURIComponent(c.client_secret)}`).toString('base64')}`
  const subjectToken = (): Promise<string> =>
    new SignJWT({ sub: 'repo:acme/bot', jti: randomUUID() })
      .setProtectedHeader({ alg: 'ES256', kid: 'wi' })
      .setIssuer(WORKLOAD_ISSUER)
      .setAudience('aegis')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(workloadKey)

  /** One token request by `grant`. */
  async function request(grant: Grant, cred = secretCred): Promise<Reply> {
    switch (grant) {
      case 'secret':
        return env.form(endpoint, { grant_type: 'client_credentials' }, { headers: { authorization: basic(cred) } })
      case 'dpop': {
        const proof = await new SignJWT({ htm: 'POST', htu: endpoint, jti: randomUUID() })
          .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: dpopKey.jwk })
          .setIssuedAt()
          .sign(dpopKey.key)
        return env.form(
          endpoint,
          { grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret },
          { headers: { dpop: proof } },
        )
      }
      case 'private_key_jwt': {
        const assertion = await new SignJWT({ jti: randomUUID() })
          .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
          .setIssuer(keyClientId)
          .setSubject(keyClientId)
          .setAudience(endpoint)
          .setIssuedAt()
          .setExpirationTime('1m')
          .sign(signingKey)
        return env.form(endpoint, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion })
      }
      case 'tls_client_auth':
        return env.form(`${env.tlsUrl}/oauth2/token`, { grant_type: 'client_credentials', client_id: certClientId }, { cert })
      case 'token_exchange':
        return env.form(endpoint, { grant_type: EXCHANGE, subject_token: await subjectToken(), subject_token_type: JWT_TYPE })
      case 'token_exchange_authenticated':
        return env.form(
          endpoint,
          { grant_type: EXCHANGE, subject_token: await subjectToken(), subject_token_type: JWT_TYPE },
          { headers: { authorization: basic(cred) } },
        )
    }
  }

  /** Statuses of every grant, and the OAuth error of each refusal. */
  async function everyGrant(): Promise<Record<Grant, string>> {
    const out = {} as Record<Grant, string>
    for (const g of GRANTS) {
      const r = await request(g)
      out[g] = r.status === 200 ? '200' : `${r.status} ${r.body?.error}`
      if (r.status !== 200) assert.equal(r.body?.access_token, undefined)
    }
    return out
  }
  const ALL_OK = Object.fromEntries(GRANTS.map((g) => [g, '200'])) as Record<Grant, string>
  const issuedCount = async (): Promise<number> => (await env.events('token.issued')).filter((e) => e.tenant === tenant).length
  const revoke = async (body: Record<string, unknown>): Promise<number> => (await env.admin('POST', '/revocations', body)).seq as number
  const lift = (seq: number) => env.admin('DELETE', `/revocations/${seq}`)

  test('every grant works before any revocation', async () => {
    assert.deepEqual(await everyGrant(), ALL_OK)
  })

  test('agent revocations: each grant refused with an OAuth error, nothing minted, until lifted', async () => {
    const seqs = []
    for (const agent of ['secret-bot', 'key-bot', 'cert-bot']) seqs.push(await revoke({ type: 'agent', value: agent, tenant }))
    const minted = await issuedCount()
    assert.deepEqual(await everyGrant(), {
      secret: '401 invalid_client',
      dpop: '401 invalid_client',
      private_key_jwt: '401 invalid_client',
      tls_client_auth: '401 invalid_client',
      token_exchange: '400 invalid_grant',
      token_exchange_authenticated: '401 invalid_client',
    })
    // A bootstrap credential issued for the revoked agent afterwards is refused too.
    const late = await env.admin('POST', `/tenants/${tenant}/agents/secret-bot/bootstrap-credentials`, { ttl_seconds: 600, single_use: false })
    const r = await request('secret', late)
    assert.equal(r.status, 401)
    assert.equal(r.body.error, 'invalid_client')
    assert.equal(await issuedCount(), minted, 'no token.issued event for a revoked agent')
    for (const seq of seqs) await lift(seq)
    assert.deepEqual(await everyGrant(), ALL_OK)
    assert.equal((await request('secret', late)).status, 200)
  })

  test('a tenant revocation refuses every grant of every agent of the tenant', async () => {
    const seq = await revoke({ type: 'tenant', value: tenant })
    const minted = await issuedCount()
    const refused = await everyGrant()
    for (const g of GRANTS) assert.notEqual(refused[g], '200', g)
    assert.equal(await issuedCount(), minted)
    await lift(seq)
    assert.deepEqual(await everyGrant(), ALL_OK)
  })

  test("a client revocation refuses that client (a credential or an agent's own client id) and not the others", async () => {
    const cred = await revoke({ type: 'client', value: secretCred.client_id, tenant })
    const key = await revoke({ type: 'client', value: keyClientId, tenant })
    const r = await everyGrant()
    assert.equal(r.secret, '401 invalid_client')
    assert.equal(r.dpop, '401 invalid_client')
    assert.equal(r.private_key_jwt, '401 invalid_client')
    assert.equal(r.tls_client_auth, '200')
    await lift(cred)
    await lift(key)
    assert.deepEqual(await everyGrant(), ALL_OK)
  })
})
