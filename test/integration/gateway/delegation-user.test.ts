import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { randomUUID } from 'node:crypto'
import { SignJWT, decodeJwt, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose'
import { activatePolicy, authorize, eventually, startGatewayEnv, type Credential, type GatewayEnv } from '../../helpers/gateway-env.js'
import { startGatewayProcess, type GatewayProcess } from '../../helpers/gateway-processes.js'

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
const AT = 'urn:ietf:params:oauth:token-type:access_token'
const ID = 'urn:ietf:params:oauth:token-type:id_token'

/** An enterprise identity provider on loopback: OIDC discovery and JWKS, ID tokens signed with keys this test makes. */
class LoopbackOidc {
  readonly server: Server
  url = ''
  private key!: CryptoKey
  private jwk!: JWK
  constructor() {
    this.server = createServer((req, res) => {
      res.setHeader('content-type', 'application/json')
      if (req.url === '/.well-known/openid-configuration') return res.end(JSON.stringify({ issuer: this.url, jwks_uri: `${this.url}/jwks` }))
      if (req.url === '/jwks') return res.end(JSON.stringify({ keys: [this.jwk] }))
      res.statusCode = 404
      res.end('{}')
    })
  }
  async start(): Promise<void> {
    const kp = await generateKeyPair('ES256')
    this.key = kp.privateKey
    this.jwk = { ...(await exportJWK(kp.publicKey)), kid: 'idp-1', alg: 'ES256', use: 'sig' }
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r))
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`
  }
  idToken(claims: Record<string, unknown>, o: { aud?: string; key?: CryptoKey; exp?: number } = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000)
    return new SignJWT({ ...claims, jti: randomUUID() })
      .setProtectedHeader({ alg: 'ES256', kid: 'idp-1', typ: 'JWT' })
      .setIssuer(this.url)
      .setAudience(o.aud ?? 'aegis-people')
      .setIssuedAt(now)
      .setExpirationTime(o.exp ?? now + 600)
      .sign(o.key ?? this.key)
  }
  close(): Promise<void> {
    return new Promise((r) => {
      this.server.closeAllConnections()
      this.server.close(() => r())
    })
  }
}

describe('an agent acting on behalf of a person (RFC 8693 §4.1, subject = the person, actor = the agent)', () => {
  let env: GatewayEnv
  let gateway: GatewayProcess
  const idp = new LoopbackOidc()
  let billing: Credential
  let ledger: Credential

  async function exchange(subject: string, actor: string, extra: Record<string, string> = {}): Promise<{ status: number; body: Record<string, any> }> {
    const res = await fetch(`${env.issuer}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: GRANT,
        subject_token: subject,
        subject_token_type: ID,
        actor_token: actor,
        actor_token_type: AT,
        ...extra,
      }).toString(),
    })
    return { status: res.status, body: (await res.json()) as Record<string, any> }
  }

  before(async () => {
    await idp.start()
    env = await startGatewayEnv({ overrides: { tokenExchange: { jwksAllowedNetworks: ['127.0.0.0/8'] } } })
    billing = await env.agent('billing-bot', ['payments.transfer', 'payments.refund', 'payments.get'], {
      scopes: ['payments:read', 'payments:write'],
      delegates: ['ledger-bot'],
    })
    ledger = await env.agent('ledger-bot', ['payments.transfer', 'payments.get'], { scopes: ['payments:read', 'payments:write'] })
    await env.admin('POST', `/tenants/${env.tenant}/trusted-issuers`, {
      issuer: idp.url,
      jwks_uri: `${idp.url}/jwks`,
      audience: 'aegis-people',
      rules: [],
      users: {
        claim: 'groups',
        grants: [
          { value: 'treasury', scopes: ['payments:read', 'payments:write'], capabilities: ['payments.transfer', 'payments.get'] },
          { value: 'staff', scopes: ['payments:read'], capabilities: ['payments.get'] },
        ],
        resources_claim: 'accounts',
      },
    })
    await activatePolicy(env, readFileSync('policies/templates/payments/policy.cedar', 'utf8'))
    gateway = await startGatewayProcess({ issuer: env.issuer, gatewayToken: env.gatewayToken, logLevel: 'silent', gateway: { id: `gw-user-${env.tenant}` } })
  })
  after(async () => {
    await gateway?.stop()
    await env?.close()
    await idp.close()
  })

  test("sub is the person, act.sub the agent, no wider than the agent's and the person's grants; the template holds the person's accounts", async () => {
    const person = await idp.idToken({ sub: 'alice', groups: ['treasury', 'staff'], accounts: ['acc-alice-1'] })
    const r = await exchange(person, await env.token(billing))
    assert.equal(r.status, 200, JSON.stringify(r.body))
    const claims = decodeJwt(r.body.access_token)
    assert.equal(claims.sub, 'alice')
    assert.equal(claims.agent_id, 'billing-bot')
    assert.deepEqual(claims.act, { sub: 'billing-bot' })
    assert.deepEqual((claims.delegation as { user_resources: string[] }).user_resources, ['acc-alice-1'])
    assert.equal(claims.scope, 'payments:read payments:write')
    // payments.refund is the agent's but not the person's: dropped.
    const manifest = await env.admin('GET', `/manifests/${claims.capability_hash}`)
    assert.deepEqual((manifest.capabilities ?? (manifest.manifest as { capabilities: string[] }).capabilities) as string[], [
      'payments.get',
      'payments.transfer',
    ])

    // payments.transfer is @risk("high"): each token's jti is good for one transfer, so each call gets a fresh exchange.
    const fresh = async (): Promise<string> => (await exchange(person, await env.token(billing))).body.access_token as string
    const token = r.body.access_token as string
    await eventually(async () => (await authorize(gateway.url, token, { action: { tool: 'payments.get' } })).status === 200)
    const transfer = async (t: string, from: string) =>
      authorize(gateway.url, t, { action: { tool: 'payments.transfer', params: { amount: 100, currency: 'USD', from_account: from } } })
    const own = await transfer(await fresh(), 'acc-alice-1')
    assert.equal(own.body.decision, 'allow', JSON.stringify([own.status, own.body]))
    const other = await transfer(await fresh(), 'acc-bob-1')
    assert.equal(other.body.decision, 'deny')
    assert.ok(JSON.stringify(other.body.reasons).includes('transfer-delegated-own-account'), JSON.stringify(other.body))
    assert.equal((await authorize(gateway.url, await fresh(), { action: { tool: 'payments.refund', params: { amount: 5 } } })).body.decision, 'deny')

    // The agent hands the person's work to a sub-agent: the person and their accounts stay, the chain grows.
    const toLedger = async (): Promise<string> => {
      const res = await fetch(`${env.issuer}/oauth2/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: GRANT,
          subject_token: await fresh(),
          subject_token_type: AT,
          actor_token: await env.token(ledger),
          actor_token_type: AT,
        }),
      })
      const body = (await res.json()) as { access_token: string }
      assert.equal(res.status, 200, JSON.stringify(body))
      return body.access_token
    }
    const subToken = await toLedger()
    const subClaims = decodeJwt(subToken)
    assert.equal(subClaims.sub, 'alice')
    assert.deepEqual(subClaims.act, { sub: 'ledger-bot', act: { sub: 'billing-bot' } })
    assert.equal((await transfer(subToken, 'acc-alice-1')).body.decision, 'allow')
    assert.equal((await transfer(await toLedger(), 'acc-bob-1')).body.decision, 'deny')

    const issued = (await env.cp.deps.store.audit.query({ type: 'token.issued', limit: 500 })).find((e) => e.data?.jti === claims.jti)
    assert.ok(issued)
    assert.deepEqual((issued.data as { delegation: unknown }).delegation, { chain: ['billing-bot'], depth: 1, user: 'alice' })
  })

  test('a person the tenant maps nothing to, a forged or foreign-audience person token, a wider scope: refused', async () => {
    const actor = await env.token(billing)
    const nobody = await exchange(await idp.idToken({ sub: 'mallory', groups: ['contractors'] }), actor)
    assert.equal(nobody.status, 400)
    assert.equal(nobody.body.error, 'invalid_request')

    const forgedKey = (await generateKeyPair('ES256')).privateKey
    const forged = await exchange(await idp.idToken({ sub: 'alice', groups: ['treasury'] }, { key: forgedKey }), actor)
    assert.equal(forged.status, 400)
    assert.equal(forged.body.error, 'invalid_request')

    const foreign = await exchange(await idp.idToken({ sub: 'alice', groups: ['treasury'] }, { aud: 'someone-else' }), actor)
    assert.equal(foreign.status, 400)
    assert.equal(foreign.body.error, 'invalid_request')

    // The person's resources travel in every token of the chain: bounded.
    const hoard = Array.from({ length: 60 }, (_, i) => `acc-${i}-${'x'.repeat(40)}`)
    const tooMany = await exchange(await idp.idToken({ sub: 'alice', groups: ['treasury'], accounts: hoard }), actor)
    assert.equal(tooMany.status, 400)
    assert.equal(tooMany.body.error, 'invalid_request')

    // staff only gets payments:read; asking for write is wider than the person's grants.
    const wider = await exchange(await idp.idToken({ sub: 'bob', groups: ['staff'] }), actor, { scope: 'payments:write' })
    assert.equal(wider.status, 400)
    assert.equal(wider.body.error, 'invalid_scope')

    // Without an actor token the person's token is a workload exchange, which this issuer has no rules for.
    const plain = await fetch(`${env.issuer}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: GRANT, subject_token: await idp.idToken({ sub: 'alice', groups: ['treasury'] }), subject_token_type: ID }),
    })
    assert.equal(plain.status, 400)
  })
})
