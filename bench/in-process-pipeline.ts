/**
 * The decision pipeline in process, as the in-process benches build it: a
 * real verifier reading a JWKS served on loopback, the in-memory deny list
 * and replay cache, a loaded feed snapshot and manifest.
 */
import { createServer, type Server } from 'node:http'
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { loadConfig } from '../src/config/load.js'
import type { AegisConfig } from '../src/config/schema.js'
import type { FeedSnapshot } from '../src/control-plane/index.js'
import { DEFAULT_TUNING, DecisionPipeline, GatewayState, LogDecisionSink, ManifestCache, type GatewayDeps } from '../src/gateway/index.js'
import { noApprovals } from '../src/gateway/pipeline/index.js'
import type { CapabilityManifest } from '../src/lib/capability.js'
import { systemClock } from '../src/lib/clock.js'
import { silentLogger, type Logger } from '../src/observability/logger.js'
import { Metrics } from '../src/observability/metrics.js'
import type { PolicyCompiler } from '../src/policy/types.js'
import { MemoryDenyList } from '../src/store/memory/deny-list.js'
import { MemoryReplayCache } from '../src/store/memory/replay-cache.js'
import { createVerifier, type Verifier } from '../src/verify/index.js'

/** Serves `{"keys": [publicKey]}` on loopback; resolves with its URL and a close(). */
export async function serveJwks(publicKey: KeyObject, kid: string, cacheControl?: string): Promise<{ url: string; close(): Promise<void> }> {
  const body = JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid, alg: 'EdDSA', use: 'sig' }] })
  const server: Server = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json')
    if (cacheControl !== undefined) res.setHeader('cache-control', cacheControl)
    res.end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/jwks`,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** A fresh Ed25519 key served as a JWKS on loopback, and a verifier (with the gateway's configuration) that reads it. */
export async function benchVerifier(
  issuer: string,
  audience: string,
): Promise<{
  privateKey: KeyObject
  kid: string
  config: AegisConfig
  verifier: Verifier
  logger: Logger
  close(): Promise<void>
}> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const kid = 'bench-1'
  const jwks = await serveJwks(publicKey, kid)
  const config = loadConfig({ env: {}, overrides: { issuer, audience, logLevel: 'silent' } })
  const verifier = createVerifier({ issuer, audience, jwksUrl: jwks.url, cacheSize: config.gateway.verifiedCacheSize })
  return {
    privateKey,
    kid,
    config,
    verifier,
    logger: silentLogger(),
    close: async () => {
      verifier.close()
      await jwks.close()
    },
  }
}

export interface InProcessPipelineOptions {
  config: AegisConfig
  logger: Logger
  verifier: Verifier
  compiler: PolicyCompiler
  /** What the feed would have loaded: agents, policies, revocations. */
  snapshot: Omit<FeedSnapshot, 'generatedAt'>
  /** The one manifest every token of the bench names. */
  manifest: CapabilityManifest
  hash: string
  metrics?: Metrics
}

/** A ready pipeline (snapshot applied, feed connected, manifest loaded) and what it was built from. */
export async function inProcessPipeline(o: InProcessPipelineOptions): Promise<{ pipeline: DecisionPipeline; deps: GatewayDeps }> {
  const metrics = o.metrics ?? new Metrics()
  const denyList = new MemoryDenyList()
  const state = new GatewayState({ denyList, compiler: o.compiler, logger: o.logger, metrics, clock: systemClock })
  state.applySnapshot({ ...o.snapshot, generatedAt: Date.now() })
  state.feedConnected()
  const manifests = new ManifestCache(async () => o.manifest, o.logger)
  await manifests.load(o.hash)
  const deps: GatewayDeps = {
    config: o.config,
    logger: o.logger,
    metrics,
    clock: systemClock,
    gatewayId: 'bench',
    verifier: o.verifier,
    denyList,
    replay: new MemoryReplayCache(),
    state,
    manifests,
    policyCompiler: o.compiler,
    decisions: new LogDecisionSink(o.logger),
    approvals: noApprovals,
    redisHealth: null,
    tuning: DEFAULT_TUNING,
  }
  return { pipeline: new DecisionPipeline(deps), deps }
}
