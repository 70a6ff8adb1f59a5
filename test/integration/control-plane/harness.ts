/**
 * A real control plane on 127.0.0.1 for these tests: real store (SQLite in a
 * temp dir, or PostgreSQL), real keys, real audit chain, real HTTP.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { loadConfig } from '../../../src/config/load.js'
import type { AegisConfig } from '../../../src/config/schema.js'
import { buildControlPlane, type ControlPlane } from '../../../src/control-plane/index.js'
import type { ControlPlaneDeps } from '../../../src/control-plane/deps.js'
import type { AuditEvent } from '../../../src/store/types.js'
export { freePort } from '../../helpers/ports.js'
import { onFreePorts } from '../../helpers/ports.js'

export interface Harness {
  cp: ControlPlane
  deps: ControlPlaneDeps
  config: AegisConfig
  url: string
  adminToken: string
  gatewayToken: string
  close(): Promise<void>
  /** Every audit event of a type, oldest first (after flushing pending writes). */
  events(type: string): Promise<AuditEvent[]>
}

export interface HarnessOptions {
  /** Config overrides (nested like the file). */
  overrides?: Record<string, unknown>
  deps?: Partial<ControlPlaneDeps>
  databaseUrl?: string
}

export async function startControlPlane(opts: HarnessOptions = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-cp-'))
  const adminToken = `adm_${randomBytes(32).toString('base64url')}`
  const gatewayToken = `gw_${randomBytes(32).toString('base64url')}`
  const { port, config, cp } = await onFreePorts(1, async ([port = 0]) => {
    const config = loadConfig({
      env: {},
      overrides: {
        dataDir: dir,
        kek: randomBytes(32).toString('hex'),
        issuer: `http://127.0.0.1:${port}`,
        logLevel: 'silent',
        instanceId: `cp-test-${randomBytes(3).toString('hex')}`,
        adminToken,
        gatewayToken,
        ...(opts.databaseUrl ? { databaseUrl: opts.databaseUrl } : {}),
        ...opts.overrides,
      },
    })
    const cp = await buildControlPlane(config, opts.deps)
    try {
      await cp.app.listen({ port, host: '127.0.0.1' })
    } catch (err) {
      await cp.close()
      throw err
    }
    return { port, config, cp }
  })
  return {
    cp,
    deps: cp.deps,
    config,
    url: `http://127.0.0.1:${port}`,
    adminToken: config.adminToken!,
    gatewayToken: config.gatewayToken!,
    async close() {
      await cp.close()
      rmSync(dir, { recursive: true, force: true })
    },
    async events(type: string) {
      const w = cp.deps.audit as { flush?: () => Promise<void> }
      await w.flush?.()
      const out: AuditEvent[] = []
      let cursor: number | undefined
      for (;;) {
        const page = await cp.deps.store.audit.query({ type, limit: 500, ...(cursor !== undefined ? { cursor } : {}) })
        out.push(...page)
        if (page.length < 500) break
        cursor = page[page.length - 1]!.id
      }
      return out
    },
  }
}

export interface CallResult {
  status: number
  headers: Headers
  body: any
  text: string
}

/** JSON admin call with a bearer token. */
export async function admin(h: { url: string }, token: string, method: string, path: string, body?: unknown): Promise<CallResult> {
  const res = await fetch(`${h.url}/admin/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  const text = await res.text()
  let parsed: unknown
  try {
    parsed = text ? JSON.parse(text) : undefined
  } catch {
    parsed = undefined
  }
  return { status: res.status, headers: res.headers, body: parsed, text }
}

/** A form POST to the token service. */
export async function form(
  h: { url: string },
  path: string,
  params: Record<string, string | string[]>,
  headers: Record<string, string> = {},
): Promise<CallResult> {
  const p = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) for (const x of Array.isArray(v) ? v : [v]) p.append(k, x)
  const res = await fetch(`${h.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: p.toString(),
  })
  const text = await res.text()
  let parsed: unknown
  try {
    parsed = text ? JSON.parse(text) : undefined
  } catch {
    parsed = undefined
  }
  return { status: res.status, headers: res.headers, body: parsed, text }
}

/** RFC 6749 §2.3.1 Basic credentials. */
export function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`
}

/** Creates a tenant, an agent and a bootstrap credential. */
export async function seedAgent(
  h: Harness,
  o: { tenant?: string; agent?: string; agentBody?: Record<string, unknown>; cred?: Record<string, unknown>; tenantBody?: Record<string, unknown> } = {},
): Promise<{ tenant: string; agentId: string; clientId: string; secret: string; agent: any }> {
  const tenant = o.tenant ?? 'acme'
  const agentId = o.agent ?? 'billing-bot'
  const t = await admin(h, h.adminToken, 'GET', `/tenants/${tenant}`)
  if (t.status === 404) {
    const c = await admin(h, h.adminToken, 'POST', '/tenants', { id: tenant, name: tenant, ...o.tenantBody })
    if (c.status !== 201) throw new Error(`tenant: ${c.status} ${c.text}`)
  }
  const a = await admin(h, h.adminToken, 'POST', `/tenants/${tenant}/agents`, {
    agent_id: agentId,
    scopes: ['payments:write', 'crm:read'],
    capabilities: ['payments.transfer', 'crm.read'],
    max_ttl_seconds: 900,
    ...o.agentBody,
  })
  if (a.status !== 201) throw new Error(`agent: ${a.status} ${a.text}`)
  const c = await admin(h, h.adminToken, 'POST', `/tenants/${tenant}/agents/${agentId}/bootstrap-credentials`, { ttl_seconds: 300, ...o.cred })
  if (c.status !== 201) throw new Error(`credential: ${c.status} ${c.text}`)
  return { tenant, agentId, clientId: c.body.client_id, secret: c.body.client_secret, agent: a.body }
}
