/**
 * The keys of a trusted issuer's `jwks_uri`, fetched for token exchange
 * without letting a tenant admin aim the control plane at internal
 * addresses: https only (http only into `tokenExchange.jwksAllowedNetworks`),
 * every resolved address checked and connected to as checked, no redirects,
 * a time and size bound, and ONE error (`JwksUnavailable`) for every way a
 * fetch can fail, so open and closed ports, slow and large answers all look
 * the same to whoever configured the URL.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { LookupFunction } from 'node:net'
import { LRUCache } from 'lru-cache'
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose'
import type { Clock } from '../../../lib/clock.js'
import { resolveTarget, type OutboundPolicy } from '../../../lib/outbound-address.js'

/** Every failure to obtain a remote key set; `cause` (logs only) says which. */
export class JwksUnavailable extends Error {
  constructor(
    readonly uri: string,
    options?: ErrorOptions,
  ) {
    super("the trusted issuer's keys could not be fetched", options)
    this.name = 'JwksUnavailable'
  }
}

export interface FetchLimits {
  /** Whole fetch (resolution, connection, headers, body), ms. */
  timeoutMs: number
  /** Largest body accepted, bytes. */
  maxBytes: number
}

/**
 * GETs `uri` under `policy` and `limits` and returns the parsed JWK Set.
 * Throws JwksUnavailable for anything else than a 200 JSON `{"keys": [...]}`
 * within the limits from an allowed address.
 */
export async function fetchJwks(uri: string, policy: OutboundPolicy, limits: FetchLimits): Promise<JSONWebKeySet> {
  const deadline = AbortSignal.timeout(limits.timeoutMs)
  const timedOut = new Promise<never>((_, reject) =>
    deadline.addEventListener('abort', () => reject(new Error(`no answer within ${limits.timeoutMs} ms`)), { once: true }),
  )
  timedOut.catch(() => {})
  try {
    const target = await Promise.race([resolveTarget(uri, policy), timedOut])
    // Connect to the address that was checked: a second resolution could answer otherwise (DNS rebinding).
    const pinned: LookupFunction = (_host, options, cb) => {
      if ((options as { all?: boolean }).all)
        (cb as unknown as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [{ address: target.address, family: target.family }])
      else cb(null, target.address, target.family)
    }
    const body = await Promise.race([
      timedOut,
      new Promise<Buffer>((resolve, reject) => {
        const request = target.url.protocol === 'https:' ? httpsRequest : httpRequest
        const req = request(
          target.url,
          { method: 'GET', lookup: pinned, signal: deadline, agent: false, headers: { accept: 'application/jwk-set+json, application/json' } },
          (res: IncomingMessage) => {
            if (res.statusCode !== 200) {
              res.resume()
              return reject(
                new Error(`status ${res.statusCode}${res.statusCode && res.statusCode >= 300 && res.statusCode < 400 ? ' (redirects are not followed)' : ''}`),
              )
            }
            const declared = Number(res.headers['content-length'])
            if (Number.isFinite(declared) && declared > limits.maxBytes) {
              res.destroy()
              return reject(new Error(`content-length ${declared} above ${limits.maxBytes}`))
            }
            const chunks: Buffer[] = []
            let size = 0
            res.on('data', (c: Buffer) => {
              size += c.length
              if (size > limits.maxBytes) {
                res.destroy()
                reject(new Error(`body above ${limits.maxBytes} bytes`))
                return
              }
              chunks.push(c)
            })
            res.on('end', () => resolve(Buffer.concat(chunks)))
            res.on('error', reject)
          },
        )
        req.on('error', reject)
        req.end()
      }),
    ])
    const parsed = JSON.parse(body.toString('utf8')) as unknown
    if (parsed === null || typeof parsed !== 'object' || !Array.isArray((parsed as JSONWebKeySet).keys)) throw new Error('not a JWK Set')
    if ((parsed as JSONWebKeySet).keys.some((k) => k === null || typeof k !== 'object' || Array.isArray(k))) throw new Error('not a JWK Set')
    return parsed as JSONWebKeySet
  } catch (err) {
    throw new JwksUnavailable(uri, { cause: err })
  }
}

interface Entry {
  /** The last key set fetched, null when none ever was. */
  keys: JWTVerifyGetKey | null
  fetchedAt: number
  /** When the last attempt failed (ms), else null: failures are remembered for the cooldown. */
  failedAt: number | null
  failure: JwksUnavailable | null
  inflight: Promise<void> | null
}

export interface RemoteJwksOptions extends FetchLimits {
  policy: OutboundPolicy
  clock: Clock
  /** Key sets older than this are fetched again, ms. */
  maxAgeMs?: number
  /** At most one refetch (for an unknown kid, or after a failure) per URL per this period, ms. */
  cooldownMs?: number
  /** URLs remembered at most. */
  maxEntries?: number
}

/**
 * Key sets of remote `jwks_uri`s, cached per URL, fetched one at a time per
 * URL. A failure is remembered for the cooldown, so an unreachable URL costs
 * its timeout at most once per cooldown, not on every exchange.
 */
export class RemoteJwksCache {
  private readonly entries: LRUCache<string, Entry>
  private readonly maxAgeMs: number
  private readonly cooldownMs: number

  constructor(
    private readonly opts: RemoteJwksOptions,
    private readonly fetcher: typeof fetchJwks = fetchJwks,
  ) {
    this.entries = new LRUCache({ max: opts.maxEntries ?? 1000 })
    this.maxAgeMs = opts.maxAgeMs ?? 600_000
    this.cooldownMs = opts.cooldownMs ?? 30_000
  }

  private entry(uri: string): Entry {
    let e = this.entries.get(uri)
    if (!e) {
      e = { keys: null, fetchedAt: 0, failedAt: null, failure: null, inflight: null }
      this.entries.set(uri, e)
    }
    return e
  }

  private refresh(uri: string, e: Entry): Promise<void> {
    e.inflight ??= this.fetcher(uri, this.opts.policy, this.opts)
      .then(
        (jwks) => {
          e.keys = createLocalJWKSet(jwks)
          e.fetchedAt = this.opts.clock.now()
          e.failedAt = null
          e.failure = null
        },
        (err: unknown) => {
          e.failedAt = this.opts.clock.now()
          e.failure = err instanceof JwksUnavailable ? err : new JwksUnavailable(uri, { cause: err })
        },
      )
      .finally(() => {
        e.inflight = null
      })
    return e.inflight
  }

  private coolingDown(e: Entry): boolean {
    const last = Math.max(e.fetchedAt, e.failedAt ?? 0)
    return last > 0 && this.opts.clock.now() - last < this.cooldownMs
  }

  /**
   * A key resolver for jose's jwtVerify over `uri`'s keys: fetched when
   * missing or stale, and once more (cooldown permitting) when the token's
   * kid is unknown. Rejects with JwksUnavailable when no key set can be had.
   */
  async resolver(uri: string): Promise<JWTVerifyGetKey> {
    const e = this.entry(uri)
    const stale = e.keys === null || this.opts.clock.now() - e.fetchedAt >= this.maxAgeMs
    if (stale && !(e.failedAt !== null && this.coolingDown(e))) await this.refresh(uri, e)
    if (e.keys === null) throw e.failure ?? new JwksUnavailable(uri)
    return async (header, token) => {
      try {
        return await e.keys!(header, token)
      } catch (err) {
        if ((err as { code?: string }).code !== 'ERR_JWKS_NO_MATCHING_KEY' || this.coolingDown(e)) throw err
        await this.refresh(uri, e)
        return e.keys!(header, token)
      }
    }
  }
}
