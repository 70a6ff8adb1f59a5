/**
 * A real control plane (embedded SQLite in a temp dir, listening on
 * 127.0.0.1) plus gateways following it, for the gateway's integration
 * tests. With `redis`, the control plane publishes its feed on Redis under a
 * unique prefix and gateways follow that prefix.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { loadConfig } from '../../src/config/load.js'
import type { AegisConfig } from '../../src/config/schema.js'
import { buildControlPlane, type ControlPlane } from '../../src/control-plane/index.js'
import { RedisFeedPublisher } from '../../src/control-plane/feed/index.js'
import { buildGateway, type Gateway, type GatewayOverrides, type GatewayTuning } from '../../src/gateway/index.js'
import { silentLogger } from '../../src/observability/logger.js'
import { REDIS_URL, redisPrefix } from './services.js'
export { freePort } from './ports.js'
import { onFreePorts } from './ports.js'

export interface Credential {
  client_id: string
  client_secret: string
}

export interface GatewayEnvOptions {
  /** Follow the feed over Redis (unique key prefix) instead of SSE. */
  redis?: boolean
  /** With `redis`: this Redis instead of the shared one (e.g. a private redis-server a test restarts). */
  redisUrl?: string
  /** Extra control-plane config. */
  overrides?: Record<string, unknown>
}

export interface RunningGateway {
  gw: Gateway
  url: string
  close(): Promise<void>
}

export interface GatewayEnv {
  cp: ControlPlane
  cpConfig: AegisConfig
  issuer: string
  adminToken: string
  gatewayToken: string
  /** Unique per env so parallel tests never see each other's tenant revocations. */
  tenant: string
  /** Redis prefix when `redis`. */
  prefix: string | undefined
  admin(method: string, path: string, body?: unknown, expect?: number[]): Promise<Record<string, unknown>>
  /** Registers an agent and returns a bootstrap credential for it. */
  agent(agentId: string, capabilities: string[], extra?: Record<string, unknown>): Promise<Credential>
  /** A fresh access token from the token endpoint. */
  token(cred: Credential): Promise<string>
  /** Config for a gateway following this control plane. */
  gatewayConfig(overrides?: Record<string, unknown>): AegisConfig
  /** Tuning for a gateway following this env's Redis prefix. */
  tuning(): Partial<GatewayTuning>
  /** Builds a gateway, listens on a free port, waits for ready. */
  startGateway(overrides?: Record<string, unknown>, deps?: GatewayOverrides): Promise<RunningGateway>
  close(): Promise<void>
}

export async function startGatewayEnv(opts: GatewayEnvOptions = {}): Promise<GatewayEnv> {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-gw-'))
  const adminToken = `adm_${randomBytes(32).toString('base64url')}`
  const gatewayToken = `gw_${randomBytes(32).toString('base64url')}`
  const prefix = opts.redis ? redisPrefix() : undefined
  const redisUrl = opts.redisUrl ?? REDIS_URL
  const base = {
    dataDir: dir,
    kek: randomBytes(32).toString('hex'),
    logLevel: 'silent',
    adminToken,
    gatewayToken,
    rateLimit: { perClient: 1_000_000, perIp: 10_000_000 },
    ...(opts.redis ? { redisUrl } : {}),
    ...opts.overrides,
  }
  const { issuer, cpConfig, feed, cp } = await onFreePorts(1, async ([port = 0]) => {
    const issuer = `http://127.0.0.1:${port}`
    const cpConfig = loadConfig({ env: {}, overrides: { ...base, issuer, control: { host: '127.0.0.1', port } } })
    const feed = prefix ? await RedisFeedPublisher.open({ url: redisUrl, logger: silentLogger(), prefix }) : undefined
    const cp = await buildControlPlane(cpConfig, feed ? { feed } : {})
    try {
      await cp.app.listen({ port, host: '127.0.0.1' })
    } catch (err) {
      await cp.close()
      await feed?.close().catch(() => {})
      throw err
    }
    return { issuer, cpConfig, feed, cp }
  })
  const tenant = `t-${randomBytes(4).toString('hex')}`
  const gateways = new Set<RunningGateway>()

  const admin = async (method: string, path: string, body?: unknown, expect = [200, 201, 204]): Promise<Record<string, unknown>> => {
    const res = await fetch(`${issuer}/admin/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const text = await res.text()
    if (!expect.includes(res.status)) throw new Error(`${method} ${path} answered ${res.status}: ${text}`)
    return text ? (JSON.parse(text) as Record<string, unknown>) : {}
  }
  await admin('POST', '/tenants', { id: tenant, name: 'Gateway tests' })

  const gatewayConfig = (overrides: Record<string, unknown> = {}): AegisConfig =>
    loadConfig({
      env: {},
      overrides: {
        ...base,
        issuer,
        adminToken: undefined,
        gatewayToken,
        ...overrides,
      },
    })
  const tuning = (): Partial<GatewayTuning> =>
    prefix ? { feedChannel: `${prefix}aegis:feed`, feedHashKey: `${prefix}aegis:revocations`, redisKeyPrefix: `${prefix}jti:`, redisHealthIntervalMs: 100 } : {}

  const env: GatewayEnv = {
    cp,
    cpConfig,
    issuer,
    adminToken,
    gatewayToken,
    tenant,
    prefix,
    admin,
    agent: async (agentId, capabilities, extra = {}) => {
      await admin('POST', `/tenants/${env.tenant}/agents`, {
        agent_id: agentId,
        scopes: ['crm:read', 'payments:write'],
        capabilities,
        max_ttl_seconds: 900,
        ...extra,
      })
      return (await admin('POST', `/tenants/${env.tenant}/agents/${agentId}/bootstrap-credentials`, {
        ttl_seconds: 3600,
        single_use: false,
      })) as unknown as Credential
    },
    token: async (cred) => {
      const res = await fetch(`${issuer}/oauth2/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${encodeURIComponent(cred.client_id)}:${encodeURIComponent(cred.client_secret)}`).toString('base64')}`,
        },
        body: 'grant_type=client_credentials',
      })
      const body = (await res.json()) as { access_token?: string }
      if (!res.ok || !body.access_token) throw new Error(`token endpoint answered ${res.status}: ${JSON.stringify(body)}`)
      return body.access_token
    },
    gatewayConfig,
    tuning,
    startGateway: async (overrides = {}, deps = {}) => {
      const gw = await buildGateway(gatewayConfig(overrides), { logger: silentLogger(), ...deps, tuning: { ...tuning(), ...deps.tuning } })
      await gw.app.listen({ port: 0, host: '127.0.0.1' })
      const url = `http://127.0.0.1:${(gw.app.server.address() as { port: number }).port}`
      await gw.ready
      const running: RunningGateway = {
        gw,
        url,
        close: async () => {
          gateways.delete(running)
          await gw.close()
        },
      }
      gateways.add(running)
      return running
    },
    close: async () => {
      // Shutdown steps may wait on unref'd timers (drains, flushes); keep the loop alive until they finish.
      const keepAlive = setInterval(() => {}, 1_000)
      try {
        for (const g of [...gateways]) await g.close().catch(() => {})
        await cp.close().catch(() => {})
        await feed?.close().catch(() => {})
        rmSync(dir, { recursive: true, force: true })
      } finally {
        clearInterval(keepAlive)
      }
    },
  }
  return env
}

/** POST /v1/authorize. */
export async function authorize(
  url: string,
  token: string | undefined,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${url}/v1/authorize`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
  const text = await res.text()
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {}, headers: res.headers }
}

/** Polls `fn` until it returns true (or throws after `timeoutMs`); resolves with the time it took (ms). */
export async function eventually(fn: () => Promise<boolean>, timeoutMs = 10_000, intervalMs = 5): Promise<number> {
  const start = performance.now()
  for (;;) {
    if (await fn()) return performance.now() - start
    if (performance.now() - start > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

/** A metric's value from a Prometheus text exposition (sum over matching label sets). */
export async function metricValue(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line)
    if (!m || m[1] !== name) continue
    const set = m[2] ?? ''
    if (Object.entries(labels).every(([k, v]) => set.includes(`${k}="${v}"`))) sum += Number(m[3])
  }
  return sum
}

/**
 * Stores and activates a Cedar bundle for the env's tenant and publishes it
 * on the control plane's feed, as the policy admin API does.
 */
export async function activatePolicy(
  env: GatewayEnv,
  cedar: string,
  mode: 'enforce' | 'shadow' = 'enforce',
  version = `2026-11-29.${Date.now()}`,
): Promise<string> {
  const id = `pol_${randomBytes(8).toString('hex')}`
  const now = Date.now()
  await env.cp.deps.store.policies.create({
    id,
    tenant: env.tenant,
    version,
    cedar,
    mode,
    status: 'inactive',
    createdAt: now,
    activatedAt: null,
    reviewedAt: null,
  })
  await env.cp.deps.store.policies.activate(env.tenant, id, now)
  await env.cp.deps.feed.publish({ kind: 'policy', policy: { tenant: env.tenant, active: { id, version, cedar, mode }, candidate: null } })
  return version
}

/** A small bundle exercising every decision: reads, a high-risk transfer, an approval, a sanitized charge. */
export const TEST_POLICY = `
@id("crm-read")
permit (principal, action == Action::"crm.read", resource);

@id("crm-update")
permit (principal, action == Action::"crm.update", resource);

@id("transfer")
@risk("high")
permit (principal, action == Action::"payments.transfer", resource)
when { context.params has amount && context.params.amount <= 50000 };

@id("transfer-approval")
@approval("finance")
forbid (principal, action == Action::"payments.transfer", resource)
when { context.params has amount && context.params.amount > 1000 }
unless { context.override };

@id("charge")
@sanitize("redact:/params/card_number")
permit (principal, action == Action::"payments.charge", resource);
`
