/**
 * DNS-rebinding protection for MCP routes (MCP transports, "Security
 * warning": servers must validate `Origin`; the official SDKs also check
 * `Host`). The gateway answers for the upstream, which no longer sees the
 * caller's `Origin` or `Host`, so the gateway checks them itself, per route.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { RouteConfig } from '../../../config/schema.js'
import { hostnameOfHost, normalHostname, normalOrigin } from '../../../lib/origin.js'

/** Hostnames a loopback-bound server accepts by default (as the TypeScript SDK's localhostHostValidation). */
const LOOPBACK_HOSTS: readonly string[] = Object.freeze(['localhost', '127.0.0.1', '[::1]'])

/** One route's allow-lists: `hosts` null = any `Host`; `origins` null = same origin as the request only. */
export interface OriginPolicy {
  hosts: ReadonlySet<string> | null
  origins: ReadonlySet<string> | null
}

/** True for an address only this machine reaches. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

/**
 * The route's policy: `allowed_hosts` (hostnames, port ignored), by default
 * localhost, 127.0.0.1 and [::1] when the gateway listens on loopback (the
 * case DNS rebinding attacks) and any host otherwise; `allowed_origins`
 * (exact origins), by default none but the gateway's own. The entries were
 * checked by loadConfig (a ConfigError there); one that still does not
 * normalize is left out, which can only narrow what is accepted.
 */
export function originPolicy(r: RouteConfig, listenHost: string): OriginPolicy {
  const set = (key: 'allowed_hosts' | 'allowed_origins', norm: (v: string) => string | null): Set<string> | null => {
    const v: unknown = r[key]
    if (v === undefined) return null
    if (!Array.isArray(v)) return new Set()
    const normalized = new Set<string>()
    for (const x of v) {
      const n = typeof x === 'string' ? norm(x) : null
      if (n !== null) normalized.add(n)
    }
    return normalized
  }
  const hosts = set('allowed_hosts', normalHostname) ?? (isLoopback(listenHost) ? new Set(LOOPBACK_HOSTS) : null)
  return { hosts, origins: set('allowed_origins', normalOrigin) }
}

let lastHost = ''
let lastHostname: string | null = null

const DEFAULT_PORT: Readonly<Record<string, string>> = Object.freeze({ 'http:': '80', 'https:': '443' })

/**
 * Why the request's `Host` or `Origin` is refused, or null. A request
 * without `Origin` (not from a browser) passes the origin check; one whose
 * `Origin` is `null`, malformed or repeated is refused. Without
 * `allowed_origins`, an `Origin` passes only when it names the gateway
 * itself: the same host and port as `Host`, a host the route accepts (so
 * with no host allow-list, every `Origin` is refused).
 */
export function originRefusal(policy: OriginPolicy, headers: IncomingHttpHeaders): string | null {
  const host = headers.host
  let hostname: string | null = null
  if (typeof host === 'string') {
    // Clients send the same Host on every call: parse it once (a URL parse per request is most of this check's cost).
    if (host !== lastHost) {
      lastHost = host
      lastHostname = hostnameOfHost(host)
    }
    hostname = lastHostname
  }
  if (policy.hosts !== null) {
    if (hostname === null) return 'missing or invalid Host header'
    if (!policy.hosts.has(hostname)) return 'Host not allowed for this route'
  }
  const origin = headers.origin
  if (origin === undefined) return null
  const o = typeof origin === 'string' ? normalOrigin(origin) : null
  if (o === null) return 'invalid Origin header'
  if (policy.origins !== null) return policy.origins.has(o) ? null : 'Origin not allowed for this route'
  // Same origin only: the Origin names the host and port the request was sent to, and that host is one the route accepts.
  if (policy.hosts === null || hostname === null || typeof host !== 'string') return 'Origin not allowed for this route (no allowed_origins)'
  const u = new URL(o)
  const hostPort = new URL(`http://${host}`).port || DEFAULT_PORT[u.protocol]
  if (u.hostname !== hostname || (u.port || DEFAULT_PORT[u.protocol]) !== hostPort) return 'Origin not allowed for this route'
  return null
}
