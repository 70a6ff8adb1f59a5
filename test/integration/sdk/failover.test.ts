/**
 * aegis/sdk rides through outages (issue 15 item 4), against real servers:
 * two control planes on one PostgreSQL with one of them closed, a real
 * gateway whose private redis-server is stopped and started again, and
 * small real HTTP servers answering 503 with Retry-After.
 */
import { after, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { decodeJwt } from 'jose'
import { AegisClient, AegisUnavailableError, ClientCredentialsSource, type RefreshInfo } from '../../../src/sdk/index.js'
import { activatePolicy, startGatewayEnv, TEST_POLICY } from '../../helpers/gateway-env.js'
import { freeRestartablePort } from '../../helpers/ports.js'
import { PrivateRedis, skipWithoutRedisServer } from '../../helpers/redis-server.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../../helpers/services.js'
import { startControlPlane, type Harness } from '../control-plane/harness.js'
import { startPeerHttp, type PeerHttp } from './helpers/peer-http.js'

const noPostgres = await skipWithoutPostgres()
const noRedisServer = skipWithoutRedisServer()

const ALLOW = { decision: 'allow', reasons: ['permit: test'], policy_version: 'v1', obligations: [], enforced: true }

describe('several control planes: token requests fail over', { skip: noPostgres }, () => {
  const closers: Array<() => Promise<void>> = []
  after(async () => {
    for (const c of closers.reverse()) await c().catch(() => {})
  })

  test('with the first control plane closed, tokens come from the next one; the one that answered stays first', async () => {
    const schema = await freshPostgresSchema()
    closers.push(() => schema.drop())
    // One issuer (a name in front of both, never called by the SDK here), one KEK, one admin token, one database.
    const shared = { issuer: 'http://aegis.invalid', kek: randomBytes(32).toString('hex'), adminToken: `adm_${randomBytes(32).toString('base64url')}` }
    const a: Harness = await startControlPlane({ databaseUrl: schema.url, overrides: shared })
    closers.push(() => a.close())
    const b: Harness = await startControlPlane({ databaseUrl: schema.url, overrides: shared })
    closers.push(() => b.close())
    const admin = async (path: string, body: unknown): Promise<Record<string, unknown>> => {
      const res = await fetch(`${a.url}/admin/v1${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${a.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
      assert.ok(res.status === 201 || res.status === 200, `${path}: ${res.status}`)
      return (await res.json()) as Record<string, unknown>
    }
    await admin('/tenants', { id: 'failover', name: 'Failover' })
    await admin('/tenants/failover/agents', { agent_id: 'fo-bot', scopes: ['crm:read'], capabilities: ['crm.read'], max_ttl_seconds: 900 })
    const cred = await admin('/tenants/failover/agents/fo-bot/bootstrap-credentials', { ttl_seconds: 3600, single_use: false })
    const seen: RefreshInfo[] = []
    const source = new ClientCredentialsSource({
      issuer: shared.issuer,
      controlPlaneUrls: [a.url, b.url],
      clientId: String(cred.client_id),
      clientSecret: String(cred.client_secret),
      onRefresh: (i) => seen.push(i),
    })
    closers.push(async () => source.close())

    const first = await source.getToken()
    assert.equal(decodeJwt(first).iss, shared.issuer)
    assert.equal(seen.at(-1)?.endpoint, `${a.url}/oauth2/token`)

    await a.close()
    seen.length = 0
    const second = await source.getToken({ forceRefresh: true })
    assert.notEqual(second, first)
    assert.equal(decodeJwt(second).agent_id, 'fo-bot')
    assert.deepEqual(
      seen.map((i) => [i.outcome, i.endpoint, i.code ?? null]),
      [
        ['retry', `${a.url}/oauth2/token`, 'network_error'],
        ['success', `${b.url}/oauth2/token`, null],
      ],
      'failed over at once, no backoff in between',
    )
    assert.equal(seen[0]!.delayMs, 0)

    seen.length = 0
    await source.getToken({ forceRefresh: true })
    assert.deepEqual(
      seen.map((i) => [i.outcome, i.endpoint]),
      [['success', `${b.url}/oauth2/token`]],
      'the control plane that answered is asked first',
    )
  })
})

describe("token requests: 503 and the caller's deadline", () => {
  const peers: PeerHttp[] = []
  after(async () => {
    for (const p of peers) await p.close()
  })

  test('a control plane answering 503 with Retry-After is skipped for the next one without waiting', async () => {
    const down = await startPeerHttp(() => ({ status: 503, body: { error: 'temporarily_unavailable' }, headers: { 'retry-after': '30' } }))
    peers.push(down)
    const token = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{}').toString('base64url')}.`
    const up = await startPeerHttp(() => ({ status: 200, body: { access_token: token, token_type: 'Bearer', expires_in: 600 } }))
    peers.push(up)
    const s = new ClientCredentialsSource({ issuer: 'http://aegis.invalid', controlPlaneUrls: [down.url, up.url], clientId: 'c', clientSecret: 's' })
    try {
      assert.equal(await s.getToken(), token)
      assert.equal(down.seen.length, 1)
      assert.equal(down.seen[0]!.path, '/oauth2/token')
      assert.equal(up.seen.length, 1)
    } finally {
      s.close()
    }
  })

  test("getToken stops waiting at the caller's deadline while every control plane answers 503", async () => {
    const down = await startPeerHttp(() => ({ status: 503, body: { error: 'temporarily_unavailable' }, headers: { 'retry-after': '2' } }))
    peers.push(down)
    const s = new ClientCredentialsSource({ issuer: 'http://aegis.invalid', controlPlaneUrls: [down.url], clientId: 'c', clientSecret: 's' })
    try {
      await assert.rejects(s.getToken({ signal: AbortSignal.timeout(300) }), (err: unknown) => err instanceof AegisUnavailableError && err.code === 'timeout')
      assert.equal(down.seen.length, 1, 'the Retry-After wait had not ended')
    } finally {
      s.close()
    }
  })
})

describe('decisions: the gateway unreachable or answering 503', () => {
  const peers: PeerHttp[] = []
  const clients: AegisClient[] = []
  after(async () => {
    for (const c of clients) c.close()
    for (const p of peers) await p.close()
  })

  async function tokenServer(): Promise<PeerHttp> {
    const p = await startPeerHttp(() => ({ status: 200, body: { access_token: 'opaque-test-token', token_type: 'Bearer', expires_in: 600 } }))
    peers.push(p)
    return p
  }

  test('connection refused until the gateway starts: authorize retries and returns its decision', async () => {
    const cp = await tokenServer()
    // Outside the ephemeral range: the SDK's reconnecting client cannot connect to itself on it.
    const port = await freeRestartablePort()
    const client = new AegisClient({
      issuer: 'http://aegis.invalid',
      tokenEndpoint: `${cp.url}/oauth2/token`,
      clientId: 'c',
      clientSecret: 's',
      gatewayUrl: `http://127.0.0.1:${port}`,
    })
    clients.push(client)
    const pending = client.authorize({ tool: 'crm.read' }, { timeoutMs: 20_000 })
    await new Promise((r) => setTimeout(r, 1_000))
    const { createServer } = await import('node:http')
    let calls = 0
    const gw = createServer((_req, res) => {
      calls++
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(ALLOW))
    })
    await new Promise<void>((r) => gw.listen(port, '127.0.0.1', r))
    try {
      assert.equal((await pending).decision, 'allow')
      assert.equal(calls, 1)
    } finally {
      gw.closeAllConnections()
      gw.close()
    }
  })

  test('503 with a Retry-After beyond the deadline: fails at once with retryAfterMs, without waiting', async () => {
    const cp = await tokenServer()
    const gw = await startPeerHttp(() => ({
      status: 503,
      body: { error: 'temporarily_unavailable', error_description: 'degraded:redis_unavailable (…)' },
      headers: { 'retry-after': '30' },
    }))
    peers.push(gw)
    const client = new AegisClient({
      issuer: 'http://aegis.invalid',
      tokenEndpoint: `${cp.url}/oauth2/token`,
      clientId: 'c',
      clientSecret: 's',
      gatewayUrl: gw.url,
    })
    clients.push(client)
    await assert.rejects(client.authorize({ tool: 'payments.transfer' }, { timeoutMs: 5_000 }), (err: unknown) => {
      assert.ok(err instanceof AegisUnavailableError, String(err))
      assert.equal(err.code, 'temporarily_unavailable')
      assert.equal(err.status, 503)
      assert.equal(err.retryAfterMs, 30_000)
      assert.match(err.message, /degraded:redis_unavailable/)
      return true
    })
    assert.equal(gw.seen.length, 1)
  })

  test('a real gateway during a Redis restart: a high-risk authorize rides through the 503s and is allowed', { skip: noRedisServer }, async () => {
    const redis = await PrivateRedis.start(await freeRestartablePort())
    const env = await startGatewayEnv({ redis: true, redisUrl: redis.url })
    try {
      const cred = await env.agent('ride-bot', ['crm.read', 'payments.transfer'])
      await activatePolicy(env, TEST_POLICY)
      const gw = await env.startGateway()
      const client = new AegisClient({ issuer: env.issuer, clientId: cred.client_id, clientSecret: cred.client_secret, gatewayUrl: gw.url })
      clients.push(client)
      const high = { tool: 'payments.transfer', params: { amount: 10 } }
      assert.equal((await client.authorize(high)).decision, 'allow')
      await redis.stop()
      // Longer than a few quick retries: the SDK must keep asking until Redis is back.
      const restart = new Promise<void>((resolve, reject) =>
        setTimeout(() => {
          redis.start().then(resolve, reject)
        }, 4_000),
      )
      const during = await client.authorize(high, { timeoutMs: 30_000 })
      await restart
      assert.equal(during.decision, 'allow')
      assert.equal(during.enforced, true)
    } finally {
      await env.close()
      await redis.close()
    }
  })
})
