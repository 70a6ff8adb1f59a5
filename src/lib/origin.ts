/**
 * Origins and hostnames as the WHATWG URL parser writes them, for
 * DNS-rebinding protection (`Origin` and `Host` allow-lists of MCP routes).
 */

/**
 * `scheme://host[:port]` lower-cased with the default port dropped
 * (RFC 6454 §6.1 serialization), or null when `o` is not exactly an http(s)
 * origin: a path other than `/`, a query, a fragment or user info make it
 * something else, and so does the opaque origin `null`.
 */
export function normalOrigin(o: string): string | null {
  let u: URL
  try {
    u = new URL(o)
  } catch {
    return null
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null
  const spelled = (o.endsWith('/') ? o.slice(0, -1) : o).toLowerCase()
  const withDefaultPort = `${u.protocol}//${u.host}:${u.protocol === 'https:' ? 443 : 80}`
  return spelled === u.origin || (u.port === '' && spelled === withDefaultPort) ? u.origin : null
}

/**
 * A bare hostname as the URL parser writes it (lower case, IPv6 in
 * brackets), or null when `h` is not one or carries a port.
 */
export function normalHostname(h: string): string | null {
  if (h === '' || /[/?#@\s]/.test(h)) return null
  let u: URL
  try {
    u = new URL(`http://${h}`)
  } catch {
    return null
  }
  return u.port === '' && u.host === u.hostname && u.hostname === h.toLowerCase() ? u.hostname : null
}

/**
 * The hostname of a `Host` header value (`host[:port]`; port ignored), lower
 * case, IPv6 in brackets; null when it is not a valid authority.
 */
export function hostnameOfHost(host: string): string | null {
  if (host === '' || host.length > 1024 || /[/?#@\s\\]/.test(host)) return null
  try {
    return new URL(`http://${host}`).hostname
  } catch {
    return null
  }
}
