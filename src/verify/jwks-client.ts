import type { KeyObject } from 'node:crypto'
import { systemClock, type Clock } from '../lib/clock.js'
import { importJwkSet, type ImportedKeySet, type KeySource } from './jwk-set.js'

/** Signature algorithms `aegis/verify` can check. */
export type VerifyAlgorithm = 'EdDSA' | 'RS256' | 'PS256'

const KNOWN_ALGORITHMS: ReadonlySet<string> = new Set<VerifyAlgorithm>(['EdDSA', 'RS256', 'PS256'])

/** A public key imported from the JWKS, pinned to one algorithm. */
export interface VerificationKey {
  /** The JWK `kid`. */
  readonly kid: string
  /** The JWK `alg`; a token must name exactly this algorithm. */
  readonly alg: VerifyAlgorithm
  /** The imported public key. */
  readonly key: KeyObject
  /** For EdDSA, the raw 32-byte public key (what libsodium takes); empty for RSA. */
  readonly raw: Buffer
  /** Exact signature length in bytes (64 for Ed25519, the modulus size for RSA). */
  readonly signatureBytes: number
}

/** What one JWKS fetch attempt did; passed to `onFetch` (for metrics). */
export interface JwksFetchEvent {
  /** `updated`: new key set applied; `not_modified`: 304, keys kept; `failed`: keys kept, error says why. */
  readonly result: 'updated' | 'not_modified' | 'failed'
  /** Why the fetch ran. */
  readonly trigger: 'initial' | 'scheduled' | 'retry' | 'unknown_kid' | 'manual'
  /** Number of usable keys held after the attempt. */
  readonly keys: number
  /** Milliseconds the attempt took. */
  readonly durationMs: number
  /** Short, safe description of the failure. */
  readonly error?: string
}

/** Counters of a `JwksClient`. */
export interface JwksStats {
  /** HTTP requests made for the JWKS itself (discovery not included), whatever their outcome. */
  readonly fetches: number
  /** Fetches that applied a new key set. */
  readonly updates: number
  /** Fetches answered 304 Not Modified. */
  readonly notModified: number
  /** Fetches that failed (network, status, garbage); the last good keys were kept. */
  readonly failures: number
  /** Requests made for the RFC 8414 metadata document. */
  readonly discoveryFetches: number
  /** Usable keys currently held. */
  readonly keys: number
  /** Clock time (ms) of the last successful fetch (200 or 304), or undefined. */
  readonly lastSuccessAt: number | undefined
}

/** Options of {@link JwksClient}. Give `jwksUrl`, or `issuer` to discover it. */
export interface JwksClientOptions {
  /** URL of the JWK Set (http or https). */
  jwksUrl?: string
  /**
   * Issuer identifier. Without `jwksUrl`, `jwks_uri` is read from its RFC 8414
   * metadata (`/.well-known/oauth-authorization-server`), whose `issuer` must
   * equal this value exactly.
   */
  issuer?: string
  /** Algorithms whose keys are imported; others are skipped. Default `['EdDSA']`. */
  algorithms?: VerifyAlgorithm[]
  /** Minimum milliseconds between two fetches caused by unknown `kid`s. Default 10 000. */
  cooldownMs?: number
  /** Lower bound of the freshness lifetime, whatever `max-age` says (ms). Default 5 000. */
  minRefreshMs?: number
  /** Upper bound of the freshness lifetime (ms). Default 3 600 000. */
  maxRefreshMs?: number
  /** Freshness lifetime when the response has no `Cache-Control: max-age` (ms). Default 300 000. */
  defaultMaxAgeMs?: number
  /** Request timeout (ms). Default 5 000. */
  timeoutMs?: number
  /** Largest accepted response body (bytes). Default 512 KiB. */
  maxResponseBytes?: number
  /** Most keys read from one JWK Set. Default 100. */
  maxKeys?: number
  /** Clock for cooldown and freshness bookkeeping. Default: system clock. */
  clock?: Clock
  /** Called after every fetch attempt (for metrics). Exceptions are ignored. */
  onFetch?: (event: JwksFetchEvent) => void
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** `max-age` minus `Age` in ms; 0 for no-store/no-cache; undefined when absent. */
function freshnessFrom(headers: Headers): number | undefined {
  const cc = headers.get('cache-control')
  if (cc === null) return undefined
  let maxAge: number | undefined
  for (const directive of cc.toLowerCase().split(',')) {
    const d = directive.trim()
    if (d === 'no-store' || d === 'no-cache') return 0
    const m = /^max-age\s*=\s*"?(\d{1,10})"?$/.exec(d)
    if (m) maxAge = Number(m[1])
  }
  if (maxAge === undefined) return undefined
  const age = Number(headers.get('age') ?? '0')
  return Math.max(0, maxAge - (Number.isFinite(age) && age > 0 ? age : 0)) * 1000
}

/** RFC 8414 §3.1: the well-known suffix goes between host and path. */
function metadataUrl(issuer: string): string {
  const u = new URL(issuer)
  const path = u.pathname === '/' ? '' : u.pathname.replace(/\/$/, '')
  return `${u.origin}/.well-known/oauth-authorization-server${path}`
}

function assertHttpUrl(value: string, what: string): void {
  let u: URL
  try {
    u = new URL(value)
  } catch {
    throw new TypeError(`${what} is not a valid URL`)
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new TypeError(`${what} must be an http(s) URL`)
}

async function readBounded(res: Response, max: number): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? '0')
  if (declared > max) {
    await res.body?.cancel()
    throw new Error('response too large')
  }
  if (res.body === null) return ''
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let total = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    total += value.byteLength
    if (total > max) {
      await reader.cancel()
      throw new Error('response too large')
    }
    chunks.push(value)
  }
  return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks))
}

/**
 * Fetches and caches an issuer's JWK Set for token verification.
 *
 * - Honours `Cache-Control: max-age` (bounded by `minRefreshMs`/`maxRefreshMs`)
 *   and revalidates with `If-None-Match`; a `304` keeps the keys.
 * - Refreshes in the background before the set goes stale (timers are
 *   `unref()`ed, so they never keep a process alive).
 * - An unknown `kid` causes at most one fetch per `cooldownMs`; concurrent
 *   misses share one in-flight request.
 * - Holds no keys (every lookup misses) until the first successful load;
 *   afterwards keeps the last good set while the server is down or answers
 *   garbage.
 * - Imports keys as {@link importJwkSet} does: `use` `sig` (or absent), no
 *   private members, a `kid`, an `alg` among `algorithms` matching the key
 *   type; keys sharing a `kid` are all dropped.
 */
export class JwksClient implements KeySource {
  /** Resolves once keys were loaded for the first time; rejects only if closed before that. */
  readonly ready: Promise<void>

  private readonly opts: Required<Omit<JwksClientOptions, 'jwksUrl' | 'issuer' | 'onFetch'>> & Pick<JwksClientOptions, 'onFetch'>
  private readonly issuer: string | undefined
  private jwksUrl: string | undefined
  private readonly algorithms: ReadonlySet<string>
  private set: ImportedKeySet = { keys: new Map(), fingerprints: new Map() }
  private etag: string | undefined
  private isLoaded = false
  private closed = false
  private inflight: Promise<void> | undefined
  private timer: NodeJS.Timeout | undefined
  private lastAttemptAt = Number.NEGATIVE_INFINITY
  private consecutiveFailures = 0
  private resolveReady!: () => void
  private rejectReady!: (err: Error) => void
  private counters = { fetches: 0, updates: 0, notModified: 0, failures: 0, discoveryFetches: 0 }
  private lastSuccessAt: number | undefined

  constructor(options: JwksClientOptions) {
    if (options.jwksUrl === undefined && options.issuer === undefined) throw new TypeError('JwksClient needs jwksUrl or issuer')
    if (options.jwksUrl !== undefined) assertHttpUrl(options.jwksUrl, 'jwksUrl')
    if (options.issuer !== undefined && options.jwksUrl === undefined) assertHttpUrl(options.issuer, 'issuer')
    this.issuer = options.issuer
    this.jwksUrl = options.jwksUrl
    const algorithms = options.algorithms ?? ['EdDSA']
    for (const a of algorithms) if (!KNOWN_ALGORITHMS.has(a)) throw new TypeError(`unsupported algorithm ${String(a)}`)
    this.algorithms = new Set(algorithms)
    this.opts = {
      algorithms,
      cooldownMs: options.cooldownMs ?? 10_000,
      minRefreshMs: options.minRefreshMs ?? 5_000,
      maxRefreshMs: options.maxRefreshMs ?? 3_600_000,
      defaultMaxAgeMs: options.defaultMaxAgeMs ?? 300_000,
      timeoutMs: options.timeoutMs ?? 5_000,
      maxResponseBytes: options.maxResponseBytes ?? 512 * 1024,
      maxKeys: options.maxKeys ?? 100,
      clock: options.clock ?? systemClock,
      onFetch: options.onFetch,
    }
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve
      this.rejectReady = reject
    })
    // Nobody has to await `ready`; an unobserved rejection must not crash the process.
    this.ready.catch(() => {})
    void this.fetch('initial')
  }

  /** True once a key set was loaded at least once. */
  get loaded(): boolean {
    return this.isLoaded
  }

  /** The key for `kid`, or undefined when unknown or before the first load. Never fetches. */
  getKey(kid: string): VerificationKey | undefined {
    return this.set.keys.get(kid)
  }

  /** `kid`s currently held. */
  kids(): string[] {
    return [...this.set.keys.keys()]
  }

  /** Counters for metrics and tests. */
  get stats(): JwksStats {
    return { ...this.counters, keys: this.set.keys.size, lastSuccessAt: this.lastSuccessAt }
  }

  /**
   * Asks for a refetch because a token named an unknown `kid` (or keys are not
   * loaded yet). Joins a fetch already in flight; otherwise fetches only if
   * the last attempt is at least `cooldownMs` old. Resolves when done (never
   * rejects); then look the key up again with {@link getKey}.
   */
  refreshOnMiss(): Promise<void> {
    if (this.inflight) return this.inflight
    if (this.closed) return Promise.resolve()
    if (this.opts.clock.now() - this.lastAttemptAt < this.opts.cooldownMs) return Promise.resolve()
    return this.fetch('unknown_kid')
  }

  /** Fetches now regardless of cooldown (joins one in flight). Never rejects. */
  refresh(): Promise<void> {
    if (this.closed) return Promise.resolve()
    return this.fetch('manual')
  }

  /** Stops background refreshes. Keys stay usable; a pending `ready` rejects. */
  close(): void {
    this.closed = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (!this.isLoaded) this.rejectReady(new Error('JWKS client closed before keys were loaded'))
  }

  private fetch(trigger: JwksFetchEvent['trigger']): Promise<void> {
    if (this.inflight) return this.inflight
    const p = this.doFetch(trigger).finally(() => {
      this.inflight = undefined
      // Resolved only once the fetch is over, so work started on `ready` never joins the initial fetch.
      if (this.isLoaded) this.resolveReady()
    })
    this.inflight = p
    return p
  }

  private async doFetch(trigger: JwksFetchEvent['trigger']): Promise<void> {
    const started = this.opts.clock.now()
    this.lastAttemptAt = started
    let result: JwksFetchEvent['result']
    let error: string | undefined
    let freshnessMs: number | undefined
    try {
      const url = await this.resolveJwksUrl()
      const headers: Record<string, string> = { accept: 'application/jwk-set+json, application/json' }
      if (this.etag !== undefined && this.isLoaded) headers['if-none-match'] = this.etag
      this.counters.fetches++
      const res = await fetch(url, { headers, signal: AbortSignal.timeout(this.opts.timeoutMs) })
      freshnessMs = freshnessFrom(res.headers)
      if (res.status === 304 && this.isLoaded) {
        await res.body?.cancel()
        result = 'not_modified'
        this.counters.notModified++
      } else if (res.status === 200) {
        this.set = this.parseSet(await readBounded(res, this.opts.maxResponseBytes))
        this.etag = res.headers.get('etag') ?? undefined
        result = 'updated'
        this.counters.updates++
      } else {
        await res.body?.cancel()
        throw new Error(`JWKS answered HTTP ${res.status}`)
      }
      this.consecutiveFailures = 0
      this.lastSuccessAt = this.opts.clock.now()
      this.isLoaded = true
    } catch (err) {
      result = 'failed'
      error = err instanceof Error ? err.message.slice(0, 200) : 'fetch failed'
      this.counters.failures++
      this.consecutiveFailures++
    }
    this.schedule(result === 'failed' ? undefined : (freshnessMs ?? this.opts.defaultMaxAgeMs))
    const onFetch = this.opts.onFetch
    if (onFetch) {
      try {
        onFetch({ result, trigger, keys: this.set.keys.size, durationMs: this.opts.clock.now() - started, ...(error !== undefined ? { error } : {}) })
      } catch {
        // a metrics hook must never break key refresh
      }
    }
  }

  private async resolveJwksUrl(): Promise<string> {
    if (this.jwksUrl !== undefined) return this.jwksUrl
    const issuer = this.issuer as string
    this.counters.discoveryFetches++
    const res = await fetch(metadataUrl(issuer), { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(this.opts.timeoutMs) })
    if (res.status !== 200) {
      await res.body?.cancel()
      throw new Error(`metadata answered HTTP ${res.status}`)
    }
    let meta: unknown
    try {
      meta = JSON.parse(await readBounded(res, this.opts.maxResponseBytes))
    } catch {
      throw new Error('metadata is not JSON')
    }
    if (!isRecord(meta)) throw new Error('metadata is not a JSON object')
    // RFC 8414 §3.3: metadata for another issuer must not be used.
    if (meta.issuer !== issuer) throw new Error('metadata issuer mismatch')
    if (typeof meta.jwks_uri !== 'string') throw new Error('metadata has no jwks_uri')
    assertHttpUrl(meta.jwks_uri, 'jwks_uri')
    this.jwksUrl = meta.jwks_uri
    return meta.jwks_uri
  }

  private parseSet(body: string): ImportedKeySet {
    let doc: unknown
    try {
      doc = JSON.parse(body)
    } catch {
      throw new Error('JWKS is not JSON')
    }
    return importJwkSet(doc, this.algorithms, this.opts.maxKeys, this.set)
  }

  private schedule(freshnessMs: number | undefined): void {
    if (this.closed) return
    if (this.timer) clearTimeout(this.timer)
    let delay: number
    if (freshnessMs === undefined) {
      // Failed: back off exponentially (1 s, 2 s, … 60 s) with jitter, keeping the last good keys meanwhile.
      delay = Math.min(60_000, 1000 * 2 ** Math.min(this.consecutiveFailures - 1, 6))
      delay = delay * (0.8 + Math.random() * 0.4)
    } else {
      const fresh = Math.min(this.opts.maxRefreshMs, Math.max(this.opts.minRefreshMs, freshnessMs))
      // Refresh before the set goes stale, spread so many verifiers do not fetch in step.
      delay = Math.max(this.opts.minRefreshMs, fresh * (0.7 + Math.random() * 0.1))
    }
    const trigger = freshnessMs === undefined ? 'retry' : 'scheduled'
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.fetch(trigger)
    }, delay)
    this.timer.unref()
  }
}
