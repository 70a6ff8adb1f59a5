import { LRUCache } from 'lru-cache'
import { Unavailable } from '../errors.js'
import { capabilityHash, type CapabilityManifest } from '../lib/capability.js'
import type { Logger } from '../observability/logger.js'
import type { ControlPlaneClient } from './control-plane-client.js'

/** A capability manifest the gateway verified against its hash. */
export interface VerifiedManifest {
  readonly hash: string
  readonly capabilities: readonly string[]
  /** For O(1) strict checks. */
  readonly capabilitySet: ReadonlySet<string>
  readonly schemas: Readonly<Record<string, unknown>> | undefined
}

/** Where manifests come from (the control plane, or a test's own source). */
export type ManifestFetcher = (hash: string) => Promise<unknown>

const HASH_SHAPE = /^[A-Za-z0-9_-]{43}$/

/**
 * Capability manifests by `capability_hash` (docs/reference.md "Gateway"): content
 * addressed, so each is fetched once, checked against its hash, and kept
 * (bounded LRU, so an attacker cannot grow it; an evicted one is simply
 * fetched again). Concurrent misses share one fetch. Failures are not cached.
 */
export class ManifestCache {
  private readonly cache: LRUCache<string, VerifiedManifest>
  private readonly inflight = new Map<string, Promise<VerifiedManifest>>()

  constructor(
    private readonly fetcher: ManifestFetcher,
    private readonly logger: Logger,
    max = 10_000,
  ) {
    this.cache = new LRUCache({ max })
  }

  /** The manifest when already held; never fetches. */
  get(hash: string): VerifiedManifest | undefined {
    return this.cache.get(hash)
  }

  /** The manifest, fetching it once (single flight). Rejects with temporarily_unavailable when it cannot be had or does not match its hash. */
  load(hash: string): Promise<VerifiedManifest> {
    const held = this.cache.get(hash)
    if (held) return Promise.resolve(held)
    let p = this.inflight.get(hash)
    if (!p) {
      p = this.fetchVerified(hash).finally(() => this.inflight.delete(hash))
      this.inflight.set(hash, p)
    }
    return p
  }

  /** Starts a fetch in the background (feed events), ignoring failures. */
  prefetch(hash: string): void {
    if (this.cache.has(hash) || this.inflight.has(hash)) return
    this.load(hash).catch((err: unknown) => this.logger.warn({ err, capability_hash: hash }, 'manifest prefetch failed'))
  }

  private async fetchVerified(hash: string): Promise<VerifiedManifest> {
    if (!HASH_SHAPE.test(hash)) throw new Unavailable('malformed capability_hash')
    const body = await this.fetcher(hash)
    const manifest = extractManifest(body)
    if (!manifest) throw new Unavailable('control plane answered a malformed capability manifest')
    // Content addressing: what we were given must hash to what we asked for, or it is not trusted.
    if (capabilityHash(manifest) !== hash) {
      this.logger.error({ capability_hash: hash }, 'capability manifest does not match its hash; refused')
      throw new Unavailable('capability manifest does not match its hash')
    }
    const verified: VerifiedManifest = Object.freeze({
      hash,
      capabilities: Object.freeze([...manifest.capabilities]),
      capabilitySet: new Set(manifest.capabilities),
      schemas: manifest.schemas,
    })
    this.cache.set(hash, verified)
    return verified
  }
}

/** Accepts the manifest itself or `{manifest: {...}}`; null when it is not a manifest. */
function extractManifest(body: unknown): CapabilityManifest | null {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return null
  const rec = body as Record<string, unknown>
  const m = (rec.manifest !== null && typeof rec.manifest === 'object' && !Array.isArray(rec.manifest) ? rec.manifest : rec) as Record<string, unknown>
  const caps = m.capabilities
  if (!Array.isArray(caps) || !caps.every((c) => typeof c === 'string')) return null
  const out: CapabilityManifest = { capabilities: caps as string[] }
  if (m.schemas !== undefined) {
    if (m.schemas === null || typeof m.schemas !== 'object' || Array.isArray(m.schemas)) return null
    out.schemas = m.schemas as Record<string, unknown>
  }
  const extra = Object.keys(m).filter((k) => k !== 'capabilities' && k !== 'schemas')
  if (extra.length > 0) return null
  return out
}

/** Fetches manifests from the control plane. */
export function controlPlaneManifestFetcher(client: ControlPlaneClient): ManifestFetcher {
  return (hash) => client.getJson(`/admin/v1/manifests/${encodeURIComponent(hash)}`)
}
