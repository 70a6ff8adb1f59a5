/**
 * The real Aegis roles for the SDK's integration tests: a control plane on
 * embedded SQLite in a temp dir (and, when asked, a gateway following it),
 * listening on 127.0.0.1, with a tenant and an agent registered through the
 * admin API.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { loadConfig } from '../../../../src/config/load.js'
import type { AegisConfig } from '../../../../src/config/schema.js'
import { buildControlPlane, type ControlPlane } from '../../../../src/control-plane/index.js'
import { buildGateway, type Gateway } from '../../../../src/gateway/index.js'
export { freePort } from '../../../helpers/ports.js'
import { freePort } from '../../../helpers/ports.js'

export interface Credential {
  client_id: string
  client_secret: string
}

export interface Aegis {
  config: AegisConfig
  cp: ControlPlane
  /** Control-plane URL (= issuer). */
  issuer: string
  controlPort: number
  gatewayUrl: string | undefined
  gateway: Gateway | undefined
  adminToken: string
  /** JSON admin call; throws on an unexpected status. */
  admin(method: string, path: string, body?: unknown, expect?: number[]): Promise<Record<string, unknown>>
  /** A new bootstrap credential for the test agent. */
  credential(agentId?: string): Promise<Credential>
  /** Stops the control plane (the port stays known), for outage tests. */
  stopControlPlane(): Promise<void>
  /** Starts a fresh control plane on the same port, data dir and KEK. */
  restartControlPlane(): Promise<void>
  close(): Promise<void>
}

export const TENANT = 'sdk-test'
export const AGENT = 'sdk-agent'

export interface StartOptions {
  gateway?: boolean
  overrides?: Record<string, unknown>
  /** Agent registration body (merged over the default). */
  agent?: Record<string, unknown>
  /** A Cedar policy to activate for the tenant before the gateway starts. */
  cedar?: string
}

export async function startAegis(opts: StartOptions = {}): Promise<Aegis> {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-sdk-'))
  const controlPort = await freePort()
  const gatewayPort = opts.gateway ? await freePort() : undefined
  const adminToken = `adm_${randomBytes(32).toString('base64url')}`
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir: dir,
      kek: randomBytes(32).toString('hex'),
      issuer: `http://127.0.0.1:${controlPort}`,
      logLevel: 'silent',
      adminToken,
      gatewayToken: `gw_${randomBytes(32).toString('base64url')}`,
      rateLimit: { perClient: 100_000, perIp: 1_000_000 },
      control: { host: '127.0.0.1', port: controlPort },
      ...(gatewayPort !== undefined ? { gateway: { host: '127.0.0.1', port: gatewayPort } } : {}),
      ...opts.overrides,
    },
  })
  let cp = await buildControlPlane(config)
  await cp.app.listen({ port: controlPort, host: '127.0.0.1' })
  const issuer = `http://127.0.0.1:${controlPort}`
  let gateway: Gateway | undefined
  let gatewayUrl: string | undefined

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

  const aegis: Aegis = {
    config,
    get cp() {
      return cp
    },
    issuer,
    controlPort,
    get gatewayUrl() {
      return gatewayUrl
    },
    get gateway() {
      return gateway
    },
    adminToken,
    admin,
    credential: async (agentId = AGENT) =>
      (await admin('POST', `/tenants/${TENANT}/agents/${agentId}/bootstrap-credentials`, { ttl_seconds: 86400, single_use: false })) as unknown as Credential,
    stopControlPlane: () => cp.close(),
    restartControlPlane: async () => {
      cp = await buildControlPlane(config)
      await cp.app.listen({ port: controlPort, host: '127.0.0.1' })
    },
    close: async () => {
      await gateway?.close().catch(() => {})
      await cp.close().catch(() => {})
      rmSync(dir, { recursive: true, force: true })
    },
  } as Aegis

  try {
    await admin('POST', '/tenants', { id: TENANT, name: 'SDK tests' })
    await admin('POST', `/tenants/${TENANT}/agents`, {
      agent_id: AGENT,
      scopes: ['crm:read', 'payments:write'],
      capabilities: ['crm.read', 'payments.transfer'],
      max_ttl_seconds: 900,
      ...opts.agent,
    })
    if (opts.cedar) {
      const now = Date.now()
      await cp.deps.store.policies.create({
        id: 'pol_sdk',
        tenant: TENANT,
        version: '2026-11-29.1',
        cedar: opts.cedar,
        mode: 'enforce',
        status: 'inactive',
        createdAt: now,
        activatedAt: null,
        reviewedAt: null,
      })
      await cp.deps.store.policies.activate(TENANT, 'pol_sdk', now)
    }
    if (gatewayPort !== undefined) {
      gateway = await buildGateway(config)
      await gateway.app.listen({ port: gatewayPort, host: '127.0.0.1' })
      await gateway.ready
      gatewayUrl = `http://127.0.0.1:${gatewayPort}`
    }
  } catch (err) {
    await aegis.close()
    throw err
  }
  return aegis
}
