import type { FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import { gatewayBearer } from '../config/load.js'
import type { AegisConfig } from '../config/schema.js'
import { metricsGuard } from '../http/metrics-auth.js'
import { createServer } from '../http/server.js'
import { systemClock } from '../lib/clock.js'
import { createLogger } from '../observability/logger.js'
import { Metrics } from '../observability/metrics.js'
import { CedarCompiler } from '../policy/cedar/engine.js'
import { MemoryDenyList } from '../store/memory/deny-list.js'
import { MemoryReplayCache } from '../store/memory/replay-cache.js'
import { RedisReplayCache } from '../store/redis/replay-cache.js'
import { createVerifier, JwksClient } from '../verify/index.js'
import { ControlPlaneClient } from './control-plane-client.js'
import { LogDecisionSink, TeeDecisionSink } from './decision-sink.js'
import { DecisionSpanSink, GatewayStatsReporter } from './stats-reporter.js'
import { CandidateDiffReporter } from './candidate-reporter.js'
import { DecisionLogUploader } from './decision-log/uploader.js'
import { continueTraceContext } from '../observability/request-context.js'
import type { DecisionSink, GatewayDeps, GatewayTuning } from './deps.js'
import { AckReporter } from './feed/acks.js'
import { RedisFeed } from './feed/redis.js'
import { SseFeed } from './feed/sse.js'
import { fetchFeedSummary, fetchPagedSnapshot } from './feed/paged-snapshot.js'
import { KeyFollower } from './key-follower.js'
import type { FeedSubscriber } from './feed/types.js'
import { controlPlaneManifestFetcher, ManifestCache } from './manifests.js'
import { registerAuthorize } from './modes/authorize.js'
import { registerExtAuthz } from './modes/ext-authz.js'
import { registerMcpRoutes } from './modes/mcp/index.js'
import { registerProxyRoutes } from './modes/proxy.js'
import { DecisionPipeline } from './pipeline/index.js'
import { noApprovals } from './pipeline/resolve-approval.js'
import { gatewayApprovalHook } from './approvals/hook.js'
import { RedisHealth } from './redis-health.js'
import { redisCommandConnection, redisSubscriberConnection } from './redis-connections.js'
import { GatewayState } from './state.js'

/** A built gateway: not listening (only cli/ listens). */
export interface Gateway {
  app: FastifyInstance
  deps: GatewayDeps
  pipeline: DecisionPipeline
  /** Resolves once the JWKS and the feed snapshot were loaded once (then /healthz answers 200). */
  ready: Promise<void>
  /** Stops the feed, timers and connections, and closes the server. */
  close(): Promise<void>
}

/** Dependencies to replace; `tuning` may name only the knobs it changes. */
export type GatewayOverrides = Partial<Omit<GatewayDeps, 'tuning'>> & { tuning?: Partial<GatewayTuning> }

export const DEFAULT_TUNING: GatewayTuning = Object.freeze({
  redisKeyPrefix: 'aegis:jti:',
  feedChannel: 'aegis:feed',
  feedHashKey: 'aegis:revocations',
  redisHealthIntervalMs: 1_000,
  redisCommandTimeoutMs: 500,
  ackIntervalMs: 250,
  feedBackoffInitialMs: 100,
  feedBackoffMaxMs: 10_000,
  pruneIntervalMs: 10_000,
  feedReconcileMs: 30_000,
  feedResumeWaitMs: 2_000,
})

/**
 * Builds the gateway role (docs/reference.md "Gateway"): `POST /v1/authorize`,
 * ext_authz / auth_request under `/v1/ext-authz/*`, the proxy routes of
 * `gateway.routes` (proxy and MCP, with RFC 9728 metadata for MCP), `/healthz` (503 until keys and feed were loaded once),
 * `/livez` (liveness), `/readyz` (readiness: keys held, feed loaded and not stale) and `/metrics`. It follows `controlPlaneUrl ?? issuer` for the JWKS, the
 * feed (SSE, or Redis when `redisUrl` is set) and manifests, with
 * `gatewayToken ?? adminToken` as bearer token. `overrides` replaces any
 * dependency (tests, embedding; e.g. `policyCompiler`).
 */
export async function buildGateway(config: AegisConfig, overrides: GatewayOverrides = {}): Promise<Gateway> {
  const logger = overrides.logger ?? createLogger(config.logLevel, 'aegis-gateway')
  const metrics = overrides.metrics ?? new Metrics()
  const clock = overrides.clock ?? systemClock
  const tuning: GatewayTuning = { ...DEFAULT_TUNING, ...overrides.tuning }
  const gatewayId = overrides.gatewayId ?? config.gateway.id ?? config.instanceId
  const controlPlaneUrl = config.controlPlaneUrl ?? config.issuer
  const client = new ControlPlaneClient(controlPlaneUrl, gatewayBearer(config))
  const closers: Array<() => Promise<void> | void> = []

  let jwks: JwksClient | undefined
  const verifier =
    overrides.verifier ??
    createVerifier({
      issuer: config.issuer,
      audience: config.audience,
      jwks: (jwks = new JwksClient({
        jwksUrl: `${client.baseUrl}/.well-known/jwks.json`,
        cooldownMs: config.gateway.jwksCooldownSeconds * 1000,
        clock,
        onFetch: (e) => metrics.jwksFetches.inc({ result: e.result }),
      })),
      clockSkewSeconds: config.tokens.clockSkewSeconds,
      maxTokenBytes: config.tokens.maxTokenBytes,
      ed25519: config.keys.ed25519,
      cacheSize: config.gateway.verifiedCacheSize,
      clock,
    })
  closers.push(() => {
    verifier.close()
    jwks?.close()
  })
  logger.info({ ed25519: verifier.ed25519Backend }, 'tokens are verified with Ed25519 by this implementation')

  let command: Redis | undefined
  let subscriber: Redis | undefined
  if (config.redisUrl && (!overrides.replay || !overrides.redisHealth)) {
    command = redisCommandConnection(config.redisUrl, tuning.redisCommandTimeoutMs)
    subscriber = redisSubscriberConnection(config.redisUrl)
    let lastErrorLog = 0
    const onError = (err: Error): void => {
      // ioredis reports every failed reconnect; one line per 10 s is enough.
      if (Date.now() - lastErrorLog > 10_000) {
        lastErrorLog = Date.now()
        logger.warn({ err: err.message }, 'redis connection error')
      }
    }
    command.on('error', onError)
    subscriber.on('error', onError)
    const c = command
    const s = subscriber
    closers.push(() => {
      c.disconnect()
      s.disconnect()
    })
  }
  const redisHealth =
    overrides.redisHealth !== undefined
      ? overrides.redisHealth
      : command
        ? new RedisHealth(command, subscriber ?? null, logger, tuning.redisHealthIntervalMs)
        : null
  if (redisHealth instanceof RedisHealth) closers.push(() => redisHealth.close())

  const replay = overrides.replay ?? (command ? new RedisReplayCache(command, { prefix: tuning.redisKeyPrefix }) : new MemoryReplayCache({ clock }))
  if (!config.redisUrl && !overrides.replay) logger.warn('no redisUrl: replay cache and deny list are in-process, not shared between gateway processes')
  const denyList = overrides.denyList ?? new MemoryDenyList()
  const policyCompiler = overrides.policyCompiler ?? new CedarCompiler()
  const manifests = overrides.manifests ?? new ManifestCache(controlPlaneManifestFetcher(client), logger)
  const acks = new AckReporter(client, gatewayId, logger, tuning.ackIntervalMs)
  closers.push(() => acks.close())
  // A key change on the feed refetches the JWKS at once, whatever the unknown-kid cooldown (issue 14).
  const keyFollower = new KeyFollower(verifier.jwks, logger)
  closers.push(() => keyFollower.close())
  const state =
    overrides.state ??
    new GatewayState({
      denyList,
      compiler: policyCompiler,
      logger,
      metrics,
      clock,
      onRevocationsApplied: (seq) => acks.notify(seq),
      onAgentHash: (hash) => manifests.prefetch(hash),
      onKeys: (keys) => keyFollower.announce(keys),
    })

  const baseSink: DecisionSink = overrides.decisions ?? new LogDecisionSink(logger)
  const stats = new GatewayStatsReporter(client, gatewayId, logger)
  closers.push(() => stats.close())
  const candidates = new CandidateDiffReporter(client, gatewayId, logger)
  closers.push(() => candidates.close())
  const dl = config.decisionLog
  const decisionLog = dl.enabled
    ? new DecisionLogUploader(dl.url ? new ControlPlaneClient(dl.url, gatewayBearer(config)) : client, gatewayId, logger, metrics.registry, {
        bufferSize: dl.bufferSize,
        batchSize: dl.batchSize,
        flushIntervalMs: dl.flushIntervalMs,
      })
    : null
  if (decisionLog) closers.push(() => decisionLog.close())
  const deps: GatewayDeps = {
    config,
    logger,
    metrics,
    clock,
    gatewayId,
    verifier,
    denyList,
    replay,
    state,
    manifests,
    policyCompiler,
    // Every decision also becomes a span, a KPI delta, (with a candidate bundle) a diff sample and a decision-log record on the control plane.
    decisions: new TeeDecisionSink([baseSink, new DecisionSpanSink(), stats, candidates, ...(decisionLog ? [decisionLog] : [])]),
    approvals: overrides.approvals ?? noApprovals,
    redisHealth,
    tuning,
  }
  // Approvals (step 6): overrides checked with this gateway's keys and replay cache, requests opened on the control plane.
  if (!overrides.approvals) deps.approvals = gatewayApprovalHook(deps, client)

  let feed: FeedSubscriber
  if (command && subscriber) {
    feed = new RedisFeed({
      subscriber,
      command,
      state,
      logger,
      fetchSnapshot: () => fetchPagedSnapshot(client),
      fetchSummary: () => fetchFeedSummary(client),
      channel: tuning.feedChannel,
      hashKey: tuning.feedHashKey,
      backoffInitialMs: tuning.feedBackoffInitialMs,
      backoffMaxMs: tuning.feedBackoffMaxMs,
      reconcileMs: tuning.feedReconcileMs,
      resumeWaitMs: tuning.feedResumeWaitMs,
      onLoad: (kind) => metrics.feedLoads.inc({ kind }),
      // While Redis is down the polled snapshot is what keeps the deny list fresh: poll well within the stale bound.
      pollWhileDownMs: Math.min(2_000, (config.gateway.feedStaleSeconds * 1000) / 3),
    })
  } else {
    feed = new SseFeed({
      client,
      state,
      logger,
      backoffInitialMs: tuning.feedBackoffInitialMs,
      backoffMaxMs: tuning.feedBackoffMaxMs,
      onLoad: (kind) => metrics.feedLoads.inc({ kind }),
    })
  }
  // Closed first: nothing may apply events into a gateway being torn down.
  closers.unshift(() => feed.close())

  const pruner = setInterval(() => {
    state.prune()
    if (replay instanceof MemoryReplayCache) replay.sweep()
  }, tuning.pruneIntervalMs)
  pruner.unref()
  closers.push(() => clearInterval(pruner))
  closers.push(() => replay.close())
  closers.push(async () => {
    await baseSink.close?.()
  })

  const pipeline = new DecisionPipeline(deps)
  const app = await createServer({ logger, bodyLimit: config.limits.bodyBytes, jsonDepth: config.limits.jsonDepth })

  app.get('/healthz', async (_request, reply) => {
    const ok = verifier.jwks.loaded && state.snapshotLoaded
    const now = clock.now()
    return reply
      .code(ok ? 200 : 503)
      .header('cache-control', 'no-store')
      .send({
        status: ok ? 'ok' : 'starting',
        gateway_id: gatewayId,
        jwks_loaded: verifier.jwks.loaded,
        feed: {
          snapshot_loaded: state.snapshotLoaded,
          connected: state.feedIsConnected,
          lag_seconds: state.lagSeconds(now),
          applied_seq: denyList.lastSeq,
          stale: state.feedStale(now, config.gateway.feedStaleSeconds * 1000),
        },
        redis: redisHealth === null ? null : { healthy: redisHealth.healthy },
      })
  })
  // Liveness: the process serves HTTP. Nothing a restart would fix is checked here.
  app.get('/livez', async (_request, reply) => reply.header('cache-control', 'no-store').send({ status: 'ok', gateway_id: gatewayId }))
  // Readiness: whether this gateway can decide calls now (load balancers and Kubernetes take it out of rotation otherwise).
  app.get('/readyz', async (_request, reply) => {
    const now = clock.now()
    const reasons: string[] = []
    if (verifier.jwks.stats.keys === 0)
      reasons.push(
        verifier.jwks.loaded
          ? 'jwks_empty: the control plane publishes no verification keys'
          : 'jwks_not_loaded: verification keys were never loaded from the control plane',
      )
    if (!state.snapshotLoaded) reasons.push('feed_not_loaded: the deny list and policies were never loaded')
    else if (state.feedStale(now, config.gateway.feedStaleSeconds * 1000))
      reasons.push(`feed_stale: the revocation feed has been disconnected longer than gateway.feedStaleSeconds (${config.gateway.feedStaleSeconds} s)`)
    const ready = reasons.length === 0
    return reply
      .code(ready ? 200 : 503)
      .header('cache-control', 'no-store')
      .send({
        status: ready ? 'ready' : 'not_ready',
        gateway_id: gatewayId,
        reasons,
        feed: { connected: state.feedIsConnected, lag_seconds: state.lagSeconds(now), applied_seq: denyList.lastSeq },
        // Reported, not required: a Redis outage refuses only calls that need a replay claim (503), and every gateway shares the one Redis.
        redis: redisHealth === null ? null : { healthy: redisHealth.healthy },
      })
  })
  metrics.setFeedSampler(() => ({ denyListSize: denyList.size, lagSeconds: state.lagSeconds(clock.now()), appliedSeq: denyList.lastSeq }))
  app.get('/metrics', { preHandler: metricsGuard(config) }, async (_request, reply) => {
    return reply.header('content-type', metrics.registry.contentType).send(await metrics.exposition())
  })
  continueTraceContext(app)
  registerAuthorize(app, pipeline)
  registerExtAuthz(app, pipeline, config.gateway.extAuthz)
  registerProxyRoutes(app, pipeline, config.gateway.routes, logger, config.limits)
  registerMcpRoutes(app, pipeline, deps, config.gateway.routes)

  feed.start()
  const ready = Promise.all([verifier.jwks.ready, feed.ready]).then(() => undefined)
  ready.catch(() => {})

  let closing: Promise<void> | undefined
  return {
    app,
    deps,
    pipeline,
    ready,
    close: () => {
      closing ??= (async () => {
        await app.close()
        for (const c of closers) {
          try {
            await c()
          } catch (err) {
            logger.warn({ err }, 'gateway shutdown step failed')
          }
        }
      })()
      return closing
    },
  }
}
