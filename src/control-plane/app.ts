/**
 * The control plane (docs/reference.md "Roles"): token service, JWKS, admin API,
 * revocation source, audit log. `buildControlPlane` wires the dependencies
 * and routes and returns a fastify instance that is not listening (only
 * cli/ listens).
 */
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import type { AegisConfig } from '../config/schema.js'
import { Conflict } from '../errors.js'
import { openFeed, RedisFeedPublisher } from './feed/index.js'
import { installAdminGuard } from '../http/admin-auth.js'
import { metricsGuard } from '../http/metrics-auth.js'
import { createServer } from '../http/server.js'
import { systemClock } from '../lib/clock.js'
import { sha256b64url } from '../lib/hash.js'
import { createLogger } from '../observability/logger.js'
import { Metrics } from '../observability/metrics.js'
import { continueTraceContext } from '../observability/request-context.js'
import { consoleRoutes, createConsoleSessions, type ConsoleSessions } from './console/index.js'
import { openStore } from '../store/index.js'
import { openClusterSignal } from '../store/signal.js'
import { MemoryReplayCache } from '../store/memory/replay-cache.js'
import { RedisReplayCache } from '../store/redis/replay-cache.js'
import type { ReplayCache } from '../store/replay-cache.js'
import type { AdminRole, Store } from '../store/types.js'
import { adminRoutes } from './admin/index.js'
import { approvalRoutes } from './admin/approvals.js'
import { policyRoutes } from './admin/policies.js'
import { approvalPublicRoutes } from './approvals/index.js'
import { auditRoutes, createAuditWriter } from './audit/index.js'
import type { ControlPlaneDeps } from './deps.js'
import { createKeyManager, keyRoutes } from './keys/index.js'
import { directoryFor } from './token/directory.js'
import { metadataRoutes } from './token/metadata.js'
import { tokenRoutes } from './token/routes.js'
import { openApiRoute, registerOpenApi } from './openapi.js'

/** A built control plane: the (not yet listening) app, its dependencies, and a draining close. */
export interface ControlPlane {
  app: FastifyInstance
  deps: ControlPlaneDeps
  /**
   * Stops accepting and drains in-flight requests, stops the key scheduler,
   * flushes the audit writer (final checkpoint), closes the feed, replay
   * cache and store. Dependencies passed as overrides are left to their owner.
   */
  close(): Promise<void>
}

const ADMIN_TOKEN_RE = /^[A-Za-z0-9._~+/=-]{1,512}$/

/**
 * Seeds `config.adminToken` / `config.gatewayToken` (global, stored hashed).
 * A seed that an admin revoked stays revoked; a changed seed revokes the
 * previous one of the same role.
 */
async function seedToken(deps: ControlPlaneDeps, secret: string, role: AdminRole, name: string): Promise<void> {
  if (!ADMIN_TOKEN_RE.test(secret)) throw new Error(`${name} must be 1 to 512 characters of [A-Za-z0-9._~+/=-]`)
  if (secret.length < 32) deps.logger.warn(`${name} is shorter than 32 characters; use a long random value`)
  const { store } = deps
  const hash = sha256b64url(secret)
  const existing = await store.adminTokens.getByHash(hash)
  if (existing) {
    if (existing.revokedAt !== null) deps.logger.warn(`${name} was revoked through the admin API and stays revoked`)
    return
  }
  const id = `seed-${role}-${hash.slice(0, 10)}`
  try {
    await store.adminTokens.create({
      id,
      tenant: null,
      role,
      name,
      tokenHash: hash,
      linkedIdentities: [],
      groups: [],
      createdAt: deps.clock.now(),
      revokedAt: null,
    })
  } catch (err) {
    if (!(err instanceof Conflict)) throw err
    return // another control plane seeded it at the same moment
  }
  for (const t of await store.adminTokens.list(null)) {
    if (t.name === name && t.id !== id && t.revokedAt === null) await store.adminTokens.revoke(t.id, deps.clock.now())
  }
  await deps.audit.append({ type: 'admin.token_seeded', tenant: null, actor: 'system', subject: id, data: { role, name } })
}

/** How long a readiness probe waits for the database (ms). */
const READY_PROBE_TIMEOUT_MS = 2_000

/**
 * A readiness check of the store: one indexed read, at most one in flight
 * (probes from several load balancers share it), bounded by
 * {@link READY_PROBE_TIMEOUT_MS}. Resolves null when the database answered,
 * else why not (never the driver's message: it could name hosts or users).
 */
function storeProbe(store: Store): () => Promise<string | null> {
  let inflight: Promise<string | null> | null = null
  return () => {
    inflight ??= new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => resolve(`no answer within ${READY_PROBE_TIMEOUT_MS} ms`), READY_PROBE_TIMEOUT_MS)
      // Any read of an indexed row proves the connection; no tenant has the empty id (the admin API refuses it).
      store.tenants.get('').then(
        () => {
          clearTimeout(timer)
          resolve(null)
        },
        (err: unknown) => {
          clearTimeout(timer)
          resolve(err instanceof Error && err.name !== 'Error' ? `query failed (${err.name})` : 'query failed')
        },
      )
    }).finally(() => {
      inflight = null
    })
    return inflight
  }
}

/**
 * Builds the control plane: opens the store, the keys (KEK from
 * configuration), this instance's audit chain (`chainId = config.instanceId`),
 * metrics, the feed publisher (Redis when `redisUrl`, else in-process SSE) and
 * the token endpoint's replay cache; seeds the configured admin and gateway
 * tokens; registers every route. Not listening.
 */
export async function buildControlPlane(config: AegisConfig, overrides: Partial<ControlPlaneDeps> = {}): Promise<ControlPlane> {
  const logger = overrides.logger ?? createLogger(config.logLevel, 'aegis-control-plane')
  const clock = overrides.clock ?? systemClock
  const metrics = overrides.metrics ?? new Metrics({ tenantLabels: config.metrics.tenantLabels })
  // What this function opened, closed in reverse order.
  const owned: Array<() => Promise<void>> = []
  const closeOwned = async (): Promise<void> => {
    for (const close of owned.reverse()) {
      await close().catch((err: unknown) => logger.error({ err }, 'control-plane shutdown step failed'))
    }
    owned.length = 0
  }

  try {
    let store: Store
    if (overrides.store) store = overrides.store
    else {
      store = await openStore(config, logger)
      const s = store
      owned.push(() => s.close())
    }

    const keys =
      overrides.keys ??
      (await (async () => {
        // Control planes on one store tell each other about key changes at once (LISTEN/NOTIFY on PostgreSQL).
        const signal = await openClusterSignal(config, logger)
        owned.push(() => signal.close())
        const km = await createKeyManager({ config, store, clock, logger, metrics, signal })
        owned.push(() => km.stop())
        logger.info({ ed25519: km.signingBackend() }, 'tokens are signed with Ed25519 by this implementation')
        return km
      })())

    const audit =
      overrides.audit ??
      (await (async () => {
        const w = await createAuditWriter({ store, keys, clock, logger, chainId: config.instanceId, checkpointIntervalMs: config.audit.checkpointIntervalMs })
        owned.push(() => w.close())
        return w
      })())
    if (!overrides.keys && 'attachAudit' in keys) {
      ;(keys as Awaited<ReturnType<typeof createKeyManager>>).attachAudit(audit)
      keys.start()
    }

    const feed =
      overrides.feed ??
      (await (async () => {
        const f = await openFeed(config, logger, { active: config.redisUrl ? await store.revocations.listActive(clock.now()) : undefined, now: clock.now() })
        owned.push(() => f.close())
        return f
      })())
    if (feed instanceof RedisFeedPublisher) feed.refillFrom(() => store.revocations.listActive(clock.now()))

    if (!overrides.keys && 'onChange' in keys) {
      // Gateways refetch the JWKS when the key set changes (here or on another control plane), whatever their cooldown.
      ;(keys as Awaited<ReturnType<typeof createKeyManager>>).onChange((change) =>
        feed.publish({ kind: 'keys', keys: change }).catch((err: unknown) => {
          logger.error({ err }, 'key change not published on the feed; gateways find the new key at their next JWKS refresh')
        }),
      )
    }

    const replay =
      overrides.replay ??
      (() => {
        let r: ReplayCache
        if (config.redisUrl) {
          const redis = new Redis(config.redisUrl, { enableOfflineQueue: false, commandTimeout: 1000, maxRetriesPerRequest: 1 })
          redis.on('error', (err) => logger.warn({ err: err.message }, 'replay-cache redis connection error'))
          r = new RedisReplayCache(redis, { ownsConnection: true })
        } else {
          r = new MemoryReplayCache({ clock })
        }
        const rc = r
        owned.push(() => rc.close())
        return rc
      })()

    // The console's cookie sessions count as admin authentication, unless the caller brings its own resolver.
    const consoleSessions: ConsoleSessions | null = overrides.sessions ? null : await createConsoleSessions(config, store, clock, logger)
    const sessions = overrides.sessions ?? consoleSessions?.resolver()
    const deps: ControlPlaneDeps = { config, store, keys, audit, metrics, logger, clock, feed, replay, ...(sessions ? { sessions } : {}) }
    // Counted in the store at each scrape, not kept per process: every control plane on the store reports the same number.
    metrics.approvalsOpenSource = () => store.approvals.countOpen({ now: clock.now() })

    if (config.adminToken) await seedToken(deps, config.adminToken, 'admin', 'AEGIS_ADMIN_TOKEN')
    if (config.gatewayToken) await seedToken(deps, config.gatewayToken, 'gateway', 'AEGIS_GATEWAY_TOKEN')

    const dir = directoryFor(deps)
    await dir.start()
    owned.push(async () => dir.stop())

    // 'idle': close() lets in-flight requests finish (an issued token's response is not cut off); feed streams are ended by their preClose hook.
    const app = await createServer({
      logger,
      bodyLimit: config.limits.bodyBytes,
      jsonDepth: config.limits.jsonDepth,
      fastify: { forceCloseConnections: 'idle' },
    })
    // Closing the app first drains in-flight requests before the stores go away.
    owned.push(() => app.close())
    // A connection that never sent a byte carries no request to finish, yet
    // closeIdleConnections() leaves it open until the client drops it (undici
    // pools keep one for 4 s after a gateway closes): end those at close, so
    // shutdown waits only for requests actually received.
    const sockets = new Set<Socket>()
    app.server.on('connection', (socket: Socket) => {
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket))
    })
    app.addHook('preClose', async () => {
      for (const socket of sockets) if (socket.bytesRead === 0) socket.destroy()
    })

    continueTraceContext(app)
    // Before any route: the generator collects routes as they are registered.
    await registerOpenApi(app)
    await tokenRoutes(app, deps)
    await metadataRoutes(app, deps)
    await keyRoutes(app, deps)
    await auditRoutes(app, deps)
    await approvalPublicRoutes(app, deps)
    app.get('/metrics', { preHandler: metricsGuard(config) }, async (_req, reply) => {
      const body = await metrics.registry.metrics()
      return reply.type(metrics.registry.contentType).header('cache-control', 'no-store').send(body)
    })
    app.get('/healthz', async (_req, reply) => {
      reply.header('cache-control', 'no-store')
      return { status: 'ok', role: 'control-plane', instance: config.instanceId, store: store.kind }
    })
    // Liveness: the process serves HTTP; a database outage is not something a restart fixes.
    app.get('/livez', async (_req, reply) =>
      reply.header('cache-control', 'no-store').send({ status: 'ok', role: 'control-plane', instance: config.instanceId }),
    )
    // Readiness: the database answers (tokens, revocations and admin calls all need it).
    const probe = storeProbe(store)
    app.get('/readyz', async (_req, reply) => {
      const reasons: string[] = []
      const db = await probe()
      if (db !== null) reasons.push(`database_unreachable: ${db}`)
      const ready = reasons.length === 0
      return reply
        .code(ready ? 200 : 503)
        .header('cache-control', 'no-store')
        .send({ status: ready ? 'ready' : 'not_ready', role: 'control-plane', instance: config.instanceId, store: store.kind, reasons })
    })
    await app.register(
      async (admin) => {
        // Authentication and roles for every route in this scope, from each route's config.admin.
        installAdminGuard(admin, store, sessions)
        openApiRoute(admin)
        await adminRoutes(admin, deps)
        await approvalRoutes(admin, deps)
        await policyRoutes(admin, deps)
      },
      { prefix: '/admin/v1' },
    )
    if (consoleSessions) await consoleRoutes(app, deps, consoleSessions)

    let closing: Promise<void> | null = null
    return {
      app,
      deps,
      close: () => (closing ??= closeOwned()),
    }
  } catch (err) {
    await closeOwned()
    throw err
  }
}
