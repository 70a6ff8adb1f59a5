/** Shared set-up for the key and audit tests: real stores, real keys, a manual clock. */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { loadConfig } from '../../../src/config/load.js'
import type { AegisConfig } from '../../../src/config/schema.js'
import type { ControlPlaneDeps } from '../../../src/control-plane/deps.js'
import type { AuditWriter } from '../../../src/control-plane/audit/types.js'
import type { KeyManager } from '../../../src/control-plane/keys/types.js'
import type { FeedEvent, FeedPublisher } from '../../../src/control-plane/feed/events.js'
import { createServer } from '../../../src/http/server.js'
import { ManualClock } from '../../../src/lib/clock.js'
import { sha256b64url } from '../../../src/lib/hash.js'
import { silentLogger } from '../../../src/observability/logger.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { openSqliteStore } from '../../../src/store/index.js'
import type { AdminRole, Store } from '../../../src/store/types.js'

/** A config for tests: a temp data dir, a random KEK, short but valid key timings. */
export function testConfig(overrides: Record<string, unknown> = {}): AegisConfig {
  const dataDir = mkdtempSync(join(tmpdir(), 'aegis-keys-'))
  return loadConfig({
    env: {},
    overrides: {
      dataDir,
      kek: randomBytes(32).toString('base64'),
      instanceId: 'test-cp',
      keys: { rotationIntervalSeconds: 3600, prePublishSeconds: 600, checkIntervalSeconds: 30 },
      jwks: { maxAgeSeconds: 300 },
      tokens: { maxTtlSeconds: 600, defaultTtlSeconds: 300, clockSkewSeconds: 30, overrideTtlSeconds: 300 },
      ...overrides,
    },
  })
}

/** A fresh SQLite store in its own temp directory. */
export async function tempSqlite(): Promise<{ store: Store; path: string; dir: string; cleanup: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-store-'))
  const path = join(dir, 'aegis.db')
  const store = await openSqliteStore(path)
  return {
    store,
    path,
    dir,
    cleanup: async () => {
      await store.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Start of a whole second, so epoch-second claims line up with ms arithmetic. */
export function manualClock(): ManualClock {
  return new ManualClock(Math.floor(Date.now() / 1000) * 1000)
}

export const logger = silentLogger()

/** Collects what would go to gateways. */
export class CollectingFeed implements FeedPublisher {
  readonly events: FeedEvent[] = []
  async publish(event: FeedEvent): Promise<void> {
    this.events.push(event)
  }
  async close(): Promise<void> {}
}

/** ControlPlaneDeps with the real store, keys and audit writer; the rest are small real peers. */
export function depsFor(parts: {
  config: AegisConfig
  store: Store
  keys: KeyManager
  audit: AuditWriter
  clock: ManualClock
  feed?: CollectingFeed
}): ControlPlaneDeps {
  return {
    config: parts.config,
    store: parts.store,
    keys: parts.keys,
    audit: parts.audit,
    metrics: new Metrics(),
    logger,
    clock: parts.clock,
    feed: parts.feed ?? new CollectingFeed(),
    replay: { claim: async () => true, close: async () => {} },
  }
}

/** Creates an admin token in the store and returns the bearer value. */
export async function adminToken(store: Store, tenant: string | null, role: AdminRole = 'admin'): Promise<string> {
  const token = `adm_${randomBytes(24).toString('base64url')}`
  await store.adminTokens.create({
    id: `at_${randomBytes(6).toString('hex')}`,
    tenant,
    role,
    name: 'test',
    tokenHash: sha256b64url(token),
    linkedIdentities: [],
    groups: [],
    createdAt: Date.now(),
    revokedAt: null,
  })
  return token
}

/** A fastify from createServer with the given route plugins, listening on 127.0.0.1:0. */
export async function listen(config: AegisConfig, plugins: Array<(app: FastifyInstance) => Promise<void>>): Promise<{ app: FastifyInstance; url: string }> {
  const app = await createServer({ logger, bodyLimit: config.limits.bodyBytes, jsonDepth: config.limits.jsonDepth })
  for (const p of plugins) await p(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const addr = app.server.address()
  if (!addr || typeof addr !== 'object') throw new Error('no address')
  return { app, url: `http://127.0.0.1:${addr.port}` }
}

/**
 * LIFO cleanup for a test (node's t.after runs hooks in registration order,
 * so a store registered first would close before the writer that uses it).
 */
export function deferrer(t: { after: (fn: () => Promise<void>) => void }): (fn: () => unknown) => void {
  const stack: Array<() => unknown> = []
  t.after(async () => {
    for (const fn of stack.reverse()) await fn()
  })
  return (fn) => {
    stack.push(fn)
  }
}
