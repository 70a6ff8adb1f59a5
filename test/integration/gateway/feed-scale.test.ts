/**
 * Issue 14 item 3: with 100,000 jti revocations and 100,000 agents in force,
 * a new gateway (SSE or Redis) loads the feed and accepts valid tokens (the
 * time is printed; the goal is 2 s), and an SSE gateway whose stream is cut
 * resumes from its cursor instead of reloading the snapshot.
 *
 * The control plane runs in its own process on SQLite; gateways run in this
 * one (so the time measured is the gateway's), the SSE one behind a TCP relay
 * the test can cut.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeJwt } from 'jose'
import { loadConfig } from '../../../src/config/load.js'
import { buildGateway, type Gateway } from '../../../src/gateway/index.js'
import { createLogger, silentLogger } from '../../../src/observability/logger.js'
import { fillFeedState } from '../../helpers/bulk-feed.js'
import { startControlPlaneProcess, type ControlPlaneProcess } from '../../helpers/control-plane-processes.js'
import { authorize, eventually, metricValue } from '../../helpers/gateway-env.js'
import { adminCaller, clientCredentialsToken } from '../../helpers/admin-http.js'
import { freePort } from '../../helpers/ports.js'
import { REDIS_URL, redisPrefix, skipWithoutRedis } from '../../helpers/services.js'

const N = 100_000
const CALL = { action: { tool: 'crm.read' } }

/** A TCP relay to `port` whose connections the test can cut. */
async function relay(port: number): Promise<{ url: string; cut(): void; close(): Promise<void> }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1')
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {})
    }
    client.pipe(upstream).pipe(client)
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  return {
    url,
    cut: () => {
      for (const s of sockets) s.destroy()
    },
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}

describe(`feed at scale: ${N.toLocaleString('en')} revocations and ${N.toLocaleString('en')} agents in force`, { skip: await skipWithoutRedis() }, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'aegis-scale-'))
  const adminToken = `adm_${randomBytes(24).toString('base64url')}`
  const gatewayToken = `gw_${randomBytes(24).toString('base64url')}`
  const tenant = `t-${randomBytes(4).toString('hex')}`
  const prefix = redisPrefix()
  let cp: ControlPlaneProcess
  let issuer: string
  let token: string
  let cred: { client_id: string; client_secret: string }
  const gateways: Gateway[] = []

  const admin = adminCaller(() => cp.url, adminToken)
  const newToken = (): Promise<string> => clientCredentialsToken(cp.url, cred)

  /** Builds a gateway following `url`; resolves with it and the ms from build until a valid token is allowed. */
  async function startGateway(url: string, extra: Record<string, unknown>, tuning = {}): Promise<{ gw: Gateway; gwUrl: string; ms: number }> {
    const config = loadConfig({
      env: {},
      overrides: { issuer, controlPlaneUrl: url, gatewayToken, logLevel: 'silent', gateway: { id: `scale-${randomBytes(3).toString('hex')}` }, ...extra },
    })
    const started = performance.now()
    const gw = await buildGateway(config, { logger: process.env.AEGIS_TEST_GATEWAY_LOGS === '1' ? createLogger('info') : silentLogger(), tuning })
    gateways.push(gw)
    await gw.app.listen({ port: 0, host: '127.0.0.1' })
    const gwUrl = `http://127.0.0.1:${(gw.app.server.address() as { port: number }).port}`
    await eventually(async () => (await authorize(gwUrl, token, CALL)).status === 200, 60_000, 10)
    return { gw, gwUrl, ms: performance.now() - started }
  }

  before(async () => {
    const port = await freePort()
    issuer = `http://127.0.0.1:${port}`
    cp = await startControlPlaneProcess(
      {
        issuer,
        dataDir,
        kek: randomBytes(32).toString('hex'),
        adminToken,
        gatewayToken,
        logLevel: 'silent',
        redisUrl: REDIS_URL,
        rateLimit: { perClient: 1_000_000, perIp: 10_000_000 },
      },
      { port, redisPrefix: prefix },
    )
    await admin('POST', '/tenants', { id: tenant, name: 'Scale' })
    await admin('POST', `/tenants/${tenant}/agents`, { agent_id: 'scale-bot', scopes: ['crm:read'], capabilities: ['crm.read'], max_ttl_seconds: 900 })
    cred = (await admin('POST', `/tenants/${tenant}/agents/scale-bot/bootstrap-credentials`, {
      ttl_seconds: 3600,
      single_use: false,
    })) as unknown as typeof cred
    token = await newToken()
    const ms = fillFeedState({ dataDir, tenant, revocations: N, agents: N })
    console.log(`# inserted ${N} revocations and ${N} agents in ${ms.toFixed(0)} ms`)
  })

  after(async () => {
    for (const gw of gateways) await gw.close().catch(() => {})
    await cp?.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })

  test('a new SSE gateway loads the paged snapshot and accepts a valid token; a cut stream resumes without a reload', async () => {
    const r = await relay(Number(new URL(cp.url).port))
    try {
      const { gw, gwUrl, ms } = await startGateway(r.url, {})
      console.log(`# new SSE gateway: build -> first accepted token ${ms.toFixed(0)} ms (goal < 2000 ms)`)
      assert.ok(gw.deps.denyList.size >= N, `deny list holds ${gw.deps.denyList.size}`)
      assert.equal(await metricValue(gwUrl, 'aegis_feed_loads_total', { kind: 'snapshot' }), 1)

      // Cut the stream, revoke the token while the gateway is away, let it reconnect.
      const victim = await newToken()
      assert.equal((await authorize(gwUrl, victim, CALL)).status, 200)
      r.cut()
      await admin('POST', '/revocations', { type: 'jti', value: decodeJwt(victim).jti, tenant })
      const caughtUp = await eventually(async () => (await authorize(gwUrl, victim, CALL)).status === 401, 20_000, 10)
      console.log(`# cut SSE stream: revocation made while away refused ${caughtUp.toFixed(0)} ms after the cut`)
      assert.equal(await metricValue(gwUrl, 'aegis_feed_loads_total', { kind: 'resume' }), 1, 'resumed from its cursor')
      assert.equal(await metricValue(gwUrl, 'aegis_feed_loads_total', { kind: 'snapshot' }), 1, 'no second full snapshot')
      assert.equal((await authorize(gwUrl, token, CALL)).status, 200)
    } finally {
      await r.close()
    }
  })

  test('a new Redis gateway loads the paged snapshot and accepts a valid token; after a Redis cut it resumes from the Redis log', async () => {
    // No periodic reconciliation during the test: it would find the revocation missed during the cut and reload,
    // which is its job but not what is measured here. On a loaded machine the command connection may take longer than the
    // default 2 s to reconnect; what is tested is that the gateway resumes once it does, so it may wait for it longer.
    const tuning = {
      feedChannel: `${prefix}aegis:feed`,
      feedHashKey: `${prefix}aegis:revocations`,
      redisKeyPrefix: `${prefix}jti:`,
      feedReconcileMs: 600_000,
      feedResumeWaitMs: 15_000,
    }
    const r = await relay(Number(new URL(REDIS_URL).port || 6379))
    try {
      const { gw, gwUrl, ms } = await startGateway(cp.url, { redisUrl: r.url.replace('http:', 'redis:') }, tuning)
      console.log(`# new Redis gateway: build -> first accepted token ${ms.toFixed(0)} ms (goal < 2000 ms)`)
      assert.ok(gw.deps.denyList.size >= N, `deny list holds ${gw.deps.denyList.size}`)
      assert.equal(await metricValue(gwUrl, 'aegis_feed_loads_total', { kind: 'snapshot' }), 1)
      // The feed works on top of the big snapshot.
      const first = await newToken()
      assert.equal((await authorize(gwUrl, first, CALL)).status, 200)
      await admin('POST', '/revocations', { type: 'jti', value: decodeJwt(first).jti, tenant })
      await eventually(async () => (await authorize(gwUrl, first, CALL)).status === 401, 10_000, 10)

      // Cut the gateway's Redis connections and revoke while it is away: the pub/sub message never reaches it.
      const victim = await newToken()
      assert.equal((await authorize(gwUrl, victim, CALL)).status, 200)
      r.cut()
      await admin('POST', '/revocations', { type: 'jti', value: decodeJwt(victim).jti, tenant })
      await eventually(async () => (await authorize(gwUrl, victim, CALL)).status === 401, 20_000, 10)
      // The reconnect either resumed or reloaded: wait for one of them, then check which.
      const loads = async (kind: string): Promise<number> => metricValue(gwUrl, 'aegis_feed_loads_total', { kind })
      await eventually(async () => (await loads('resume')) >= 1 || (await loads('snapshot')) >= 2, 20_000, 20)
      const [resumed, reloaded, polled] = [await loads('resume'), await loads('snapshot'), await loads('poll')]
      console.log(
        `# Redis cut: ${resumed} resumption(s) from the Redis log, ${reloaded - 1} reload(s), ${polled} snapshot(s) polled from the control plane ` +
          `while Redis was away`,
      )
      assert.ok(resumed >= 1, 'resumed from the log')
      assert.equal(reloaded, 1, 'the reconnect reloaded nothing')
      assert.equal((await authorize(gwUrl, token, CALL)).status, 200)
    } finally {
      await r.close()
    }
  })
})
