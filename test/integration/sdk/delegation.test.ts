import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { SignJWT, decodeJwt, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose'
import { AegisClient, AegisSdkError, DpopKey } from '../../../src/sdk/index.js'
import { activatePolicy, eventually, startGatewayEnv, type Credential, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'

const POLICY = `
@id("crm")
permit (principal, action in [Action::"crm.read", Action::"crm.update"], resource);

@id("people-read-only")
forbid (principal, action == Action::"crm.update", resource)
when { context has delegation && context.delegation has user };
`

describe('aegis/sdk: client.delegate and client.actOnBehalfOf', () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let planner: Credential
  let worker: Credential
  let outsider: Credential
  let idpKey: CryptoKey
  let idpJwk: JWK
  const IDP = 'https://idp.example.test'
  const clients: AegisClient[] = []

  const client = (c: Credential): AegisClient => {
    const x = new AegisClient({ issuer: env.issuer, clientId: c.client_id, clientSecret: c.client_secret, gatewayUrl: gw.url })
    clients.push(x)
    return x
  }

  before(async () => {
    env = await startGatewayEnv()
    planner = await env.agent('planner', ['crm.read', 'crm.update'], { delegates: ['worker'] })
    worker = await env.agent('worker', ['crm.read', 'crm.update'])
    outsider = await env.agent('outsider', ['crm.read'])
    const kp = await generateKeyPair('ES256')
    idpKey = kp.privateKey
    idpJwk = { ...(await exportJWK(kp.publicKey)), kid: 'k1', alg: 'ES256' }
    await env.admin('POST', `/tenants/${env.tenant}/trusted-issuers`, {
      issuer: IDP,
      jwks: { keys: [idpJwk] },
      audience: 'aegis',
      rules: [],
      users: { claim: 'groups', grants: [{ value: 'sales', scopes: ['crm:read'], capabilities: ['crm.read', 'crm.update'] }], agents: ['worker'] },
    })
    await activatePolicy(env, POLICY)
    gw = await env.startGateway()
  })
  after(async () => {
    for (const c of clients) c.close()
    await env?.close()
  })

  test('delegate: the sub-agent gets a narrowed token naming both, usable with its own client, refreshed by exchanging again', async () => {
    const plannerClient = client(planner)
    const workerClient = client(worker)
    const source = plannerClient.delegate({ to: workerClient, capabilities: ['crm.read'], ttl: 120 })
    const delegated = new AegisClient({ issuer: env.issuer, gatewayUrl: gw.url, tokenSource: source })
    clients.push(delegated)
    const first = await source.getAccessToken()
    const claims = decodeJwt(first.accessToken)
    assert.equal(claims.sub, 'planner')
    assert.deepEqual(claims.act, { sub: 'worker' })
    assert.ok(first.expiresAt - Date.now() <= 120_000)
    await eventually(async () => (await delegated.authorize({ tool: 'crm.read' })).decision === 'allow')
    assert.equal((await delegated.authorize({ tool: 'crm.update' })).decision, 'deny')

    const again = await source.getToken({ forceRefresh: true })
    assert.notEqual(again, first.accessToken)
    assert.deepEqual(decodeJwt(again).act, { sub: 'worker' })
    source.close()
  })

  test("delegate to an agent not in delegates fails with the server's invalid_request", async () => {
    const source = client(planner).delegate({ to: client(outsider) })
    await assert.rejects(source.getToken(), (err: unknown) => err instanceof AegisSdkError && err.code === 'invalid_request')
    source.close()
    assert.throws(() => {
      const c = client(planner)
      c.delegate({ to: c })
    }, TypeError)
  })

  test('a sender-constrained (DPoP) actor token is exchanged only with a proof of its key', async () => {
    const key = DpopKey.generate()
    const endpoint = `${env.issuer}/oauth2/token`
    const post = async (form: Record<string, string>, headers: Record<string, string> = {}, proofKey?: DpopKey): Promise<Response> => {
      let nonce: string | undefined
      for (let i = 0; ; i++) {
        const h = { 'content-type': 'application/x-www-form-urlencoded', ...headers }
        if (proofKey) Object.assign(h, { dpop: proofKey.proof('POST', endpoint, nonce !== undefined ? { nonce } : {}) })
        const res = await fetch(endpoint, { method: 'POST', headers: h, body: new URLSearchParams(form) })
        nonce = res.headers.get('dpop-nonce') ?? undefined
        if (res.status !== 400 || nonce === undefined || i > 0) return res
        const body = (await res.clone().json()) as { error?: string }
        if (body.error !== 'use_dpop_nonce') return res
      }
    }
    const basic = `Basic ${Buffer.from(`${worker.client_id}:${worker.client_secret}`).toString('base64')}`
    const bound = await post({ grant_type: 'client_credentials' }, { authorization: basic }, key)
    const boundBody = (await bound.json()) as { access_token: string; token_type: string }
    assert.equal(bound.status, 200, JSON.stringify(boundBody))
    assert.equal(boundBody.token_type, 'DPoP')
    const form = {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: await env.token(planner),
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      actor_token: boundBody.access_token,
      actor_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    }
    const stolen = await post(form)
    assert.equal(stolen.status, 400)
    assert.equal(((await stolen.json()) as { error: string }).error, 'invalid_request')
    const otherKey = await post(form, {}, DpopKey.generate())
    assert.equal(otherKey.status, 400)
    const proved = await post(form, {}, key)
    const provedBody = (await proved.json()) as { access_token: string; token_type: string }
    assert.equal(proved.status, 200, JSON.stringify(provedBody))
    assert.equal(provedBody.token_type, 'DPoP')
    assert.ok((decodeJwt(provedBody.access_token).cnf as { jkt?: string }).jkt)
  })

  test("actOnBehalfOf: the person's ID token (re-read at each refresh) becomes sub, the agent act.sub; the person's mapping narrows", async () => {
    let reads = 0
    const personToken = async (): Promise<string> => {
      reads++
      const now = Math.floor(Date.now() / 1000)
      return new SignJWT({ groups: ['sales'] })
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer(IDP)
        .setSubject('carol@example.test')
        .setAudience('aegis')
        .setIssuedAt(now)
        .setExpirationTime(now + 300)
        .sign(idpKey)
    }
    const source = client(worker).actOnBehalfOf(personToken)
    const forCarol = new AegisClient({ issuer: env.issuer, gatewayUrl: gw.url, tokenSource: source })
    clients.push(forCarol)
    const claims = decodeJwt(await source.getToken())
    assert.equal(claims.sub, 'carol@example.test')
    assert.equal(claims.agent_id, 'worker')
    assert.deepEqual(claims.act, { sub: 'worker' })
    assert.equal(claims.scope, 'crm:read')
    await eventually(async () => (await forCarol.authorize({ tool: 'crm.read' })).decision === 'allow')
    assert.equal((await forCarol.authorize({ tool: 'crm.update' })).decision, 'deny')
    await source.getToken({ forceRefresh: true })
    assert.equal(reads, 2)
    source.close()
    // The issuer's people may be acted for by the agents it lists only.
    const notListed = client(outsider).actOnBehalfOf(personToken)
    await assert.rejects(notListed.getToken(), (err: unknown) => err instanceof AegisSdkError && err.code === 'invalid_request')
    notListed.close()
  })
})
