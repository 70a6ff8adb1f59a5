/**
 * A real control plane slice for approval tests: SQLite store in a temp dir,
 * the real key manager and audit writer, the approval routes on a fastify
 * server listening on 127.0.0.1:0, and a manual clock.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { loadConfig } from '../../../src/config/load.js'
import type { AegisConfig } from '../../../src/config/schema.js'
import { approvalRoutes } from '../../../src/control-plane/admin/approvals.js'
import { approvalPublicRoutes } from '../../../src/control-plane/approvals/index.js'
import { createApprovalService, installApprovalService, type CreateApprovalServiceOptions } from '../../../src/control-plane/approvals/registry.js'
import type { ApprovalService } from '../../../src/control-plane/approvals/service.js'
import { createAuditWriter, type ChainAuditWriter } from '../../../src/control-plane/audit/index.js'
import type { ControlPlaneDeps } from '../../../src/control-plane/deps.js'
import { createKeyManager, keyRoutes, type ManagedKeyManager } from '../../../src/control-plane/keys/index.js'
import { createSsePublisher } from '../../../src/control-plane/feed/index.js'
import { createServer } from '../../../src/http/server.js'
import { ManualClock } from '../../../src/lib/clock.js'
import { sha256b64url } from '../../../src/lib/hash.js'
import { randomId, randomSecret } from '../../../src/lib/ids.js'
import { silentLogger } from '../../../src/observability/logger.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { MemoryReplayCache } from '../../../src/store/memory/replay-cache.js'
import { openSqliteStore } from '../../../src/store/sqlite/store.js'
import { openPostgresStore } from '../../../src/store/postgres/store.js'
import { freshPostgresSchema } from '../../helpers/services.js'
import type { AdminRole, AuditEvent, Store } from '../../../src/store/types.js'

export const ISSUER = 'http://aegis.test'

export interface Harness {
  url: string
  app: FastifyInstance
  deps: ControlPlaneDeps
  config: AegisConfig
  store: Store
  clock: ManualClock
  keys: ManagedKeyManager
  audit: ChainAuditWriter
  service: ApprovalService
  /** Creates an admin token; returns the bearer secret and its id. */
  adminToken(o: { role: AdminRole; tenant?: string | null; groups?: string[]; linked?: string[] }): Promise<{ token: string; id: string }>
  /** A real access token of an agent, signed by the control plane's current key. */
  accessToken(o: { tenant: string; agentId: string; clientId?: string; ttl?: number }): string
  /** Audit events of a type, flushed first. */
  events(type: string): Promise<AuditEvent[]>
  close(): Promise<void>
}

/** `postgres`: a fresh schema on the test PostgreSQL (gate the test with skipWithoutPostgres). */
export async function startHarness(
  opts: { overrides?: Record<string, unknown>; service?: CreateApprovalServiceOptions; store?: 'sqlite' | 'postgres' } = {},
): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'aegis-approvals-'))
  const config = loadConfig({ env: {}, overrides: { dataDir: dir, issuer: ISSUER, logLevel: 'silent', ...opts.overrides } })
  const logger = silentLogger()
  const clock = new ManualClock(Date.now())
  const metrics = new Metrics()
  const pgSchema = opts.store === 'postgres' ? await freshPostgresSchema() : undefined
  const store = pgSchema ? await openPostgresStore(pgSchema.url) : await openSqliteStore(join(dir, 'aegis.db'))
  const keys = await createKeyManager({ config, store, clock, logger, metrics, kek: randomBytes(32) })
  const audit = await createAuditWriter({ store, keys, clock, logger, chainId: 'test-cp', checkpointIntervalMs: 60_000 })
  keys.attachAudit(audit)
  const feed = createSsePublisher(() => {})
  const deps: ControlPlaneDeps = { config, store, keys, audit, metrics, logger, clock, feed, replay: new MemoryReplayCache({ clock }) }
  const service = createApprovalService(deps, opts.service ?? { delivery: { attempts: 3, baseDelayMs: 5, maxDelayMs: 20, timeoutMs: 2000 } })
  installApprovalService(deps, service)
  const app = await createServer({ logger, bodyLimit: config.limits.bodyBytes, jsonDepth: config.limits.jsonDepth })
  await app.register(async (admin) => approvalRoutes(admin, deps), { prefix: '/admin/v1' })
  await app.register(async (root) => approvalPublicRoutes(root, deps))
  await app.register(async (root) => keyRoutes(root, deps))
  await app.listen({ host: '127.0.0.1', port: 0 })
  const addr = app.server.address()
  const url = typeof addr === 'object' && addr ? `http://127.0.0.1:${addr.port}` : ''
  return {
    url,
    app,
    deps,
    config,
    store,
    clock,
    keys,
    audit,
    service,
    async adminToken(o) {
      const token = randomSecret()
      const id = randomId('adm', 8)
      await store.adminTokens.create({
        id,
        tenant: o.tenant ?? null,
        role: o.role,
        name: id,
        tokenHash: sha256b64url(token),
        linkedIdentities: o.linked ?? [],
        groups: o.groups ?? [],
        createdAt: clock.now(),
        revokedAt: null,
      })
      return { token, id }
    },
    accessToken(o) {
      const iat = Math.floor(clock.now() / 1000)
      return keys.signJwt(
        { typ: 'at+jwt' },
        {
          iss: ISSUER,
          sub: o.agentId,
          agent_id: o.agentId,
          client_id: o.clientId ?? `ag_${o.agentId}`,
          tenant: o.tenant,
          aud: config.audience,
          scope: 'payments:write',
          iat,
          nbf: iat,
          exp: iat + (o.ttl ?? 600),
          jti: randomId('jti'),
          policy_version: 'v1',
          capability_hash: 'x',
        },
      ).jwt
    },
    async events(type) {
      await audit.flush()
      return store.audit.query({ type, limit: 1000 })
    },
    async close() {
      await app.close()
      await service.close()
      await audit.close()
      await keys.stop()
      await feed.close()
      await store.close()
      await pgSchema?.drop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** A loopback HTTP server standing in for Slack, Teams or a webhook receiver; records every request. */
export interface Peer {
  url: string
  requests: Array<{ path: string; headers: IncomingMessage['headers']; body: string }>
  /** Status to answer with, per request index (default 200). */
  respond: (index: number) => number
  /** Resolves when `n` requests arrived. */
  waitFor(n: number): Promise<void>
  close(): Promise<void>
}

export async function startPeer(respond: (index: number) => number = () => 200): Promise<Peer> {
  const requests: Peer['requests'] = []
  const waiters: Array<{ n: number; resolve: () => void }> = []
  const peer: Peer = {
    url: '',
    requests,
    respond,
    waitFor(n) {
      if (requests.length >= n) return Promise.resolve()
      return new Promise((resolve) => waiters.push({ n, resolve }))
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
  const server: Server = createHttpServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const index = requests.length
      requests.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') })
      const status = peer.respond(index)
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 200 ? 'ok' : 'error')
      for (const w of [...waiters])
        if (requests.length >= w.n) {
          waiters.splice(waiters.indexOf(w), 1)
          w.resolve()
        }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  peer.url = typeof addr === 'object' && addr ? `http://127.0.0.1:${addr.port}` : ''
  return peer
}

/** JSON request helper. */
export async function call(
  url: string,
  init: { method?: string; token?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const headers: Record<string, string> = { ...init.headers }
  if (init.token) headers.authorization = `Bearer ${init.token}`
  let body: string | undefined
  if (init.body !== undefined) {
    body = typeof init.body === 'string' ? init.body : JSON.stringify(init.body)
    headers['content-type'] ??= 'application/json'
  }
  const res = await fetch(url, { method: init.method ?? (body !== undefined ? 'POST' : 'GET'), headers, ...(body !== undefined ? { body } : {}) })
  const text = await res.text()
  let json: Record<string, unknown> = {}
  try {
    json = text ? (JSON.parse(text) as Record<string, unknown>) : {}
  } catch {
    json = { raw: text }
  }
  return { status: res.status, body: json, headers: res.headers }
}

/** A standard request for `payments.transfer`. */
export function transfer(
  amount: number,
  over: Partial<{ tenant: string; agentId: string; group: string; requireConsole: boolean; policyVersion: string; to: string }> = {},
) {
  return {
    tenant: over.tenant ?? 'acme',
    agentId: over.agentId ?? 'billing-bot',
    clientId: 'ag_billing',
    tool: 'payments.transfer',
    params: { amount, currency: 'EUR', to: over.to ?? 'DE89370400440532013000', card_number: '4111111111111111' },
    resource: 'account:ops',
    policyId: 'transfers-need-approval',
    policyVersion: over.policyVersion ?? 'v1',
    group: over.group ?? 'finance',
    requireConsole: over.requireConsole ?? false,
  }
}
