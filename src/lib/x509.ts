/**
 * Client certificates for RFC 8705: thumbprints (`x5t#S256`), chain checks
 * against a CA bundle, the pins an agent registers (subject DN, SAN URI such
 * as a SPIFFE ID, SAN DNS, thumbprint), and certificates forwarded by a
 * TLS-terminating proxy (Envoy `x-forwarded-client-cert`, nginx
 * `$ssl_client_escaped_cert`). Pure: node:crypto only.
 */
import { createHash, X509Certificate } from 'node:crypto'
import { isRevoked, type Crl } from './crl.js'

/** Longest PEM bundle or forwarded header accepted (a chain of a few certificates). */
export const MAX_PEM_BYTES = 64 * 1024
const MAX_CHAIN_DEPTH = 6

/** base64url(SHA-256(DER)): the `x5t#S256` confirmation value (RFC 8705 §3.1). */
export function certThumbprint(cert: X509Certificate | Buffer): string {
  const der = Buffer.isBuffer(cert) ? cert : cert.raw
  return createHash('sha256').update(der).digest('base64url')
}

/** Every certificate in a PEM text; throws on an unreadable block. */
export function parsePemCertificates(pem: string): X509Certificate[] {
  if (pem.length > MAX_PEM_BYTES * 4) throw new Error('PEM bundle too large')
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
  return blocks.map((b) => new X509Certificate(b))
}

/** Why a certificate was not accepted (for audit logs, never for the client). */
export type CertRejection = 'expired' | 'not_yet_valid' | 'untrusted' | 'no_ca' | 'revoked'

/**
 * Validates `leaf` up to one of `roots`: each link's signature
 * (`X509Certificate.verify` with the issuer's key, after `checkIssued`) and
 * every certificate's validity dates at `nowMs`. Intermediates may come from
 * the presented chain. With `crls`, every certificate below the root is
 * looked up in the CRLs its issuer signed (RFC 5280 §6.3; a CRL that does
 * not verify with the issuer is ignored). Returns null when valid, else the
 * reason.
 */
export function validateChain(
  leaf: X509Certificate,
  intermediates: readonly X509Certificate[],
  roots: readonly X509Certificate[],
  nowMs: number,
  crls: readonly Crl[] = [],
): CertRejection | null {
  if (roots.length === 0) return 'no_ca'
  let cur = leaf
  for (let depth = 0; depth < MAX_CHAIN_DEPTH; depth++) {
    const dates = checkDates(cur, nowMs)
    if (dates) return dates
    const root = roots.find((r) => cur.checkIssued(r) && cur.verify(r.publicKey))
    if (root) {
      if (crls.length > 0 && isRevoked(cur, root, crls)) return 'revoked'
      return checkDates(root, nowMs)
    }
    // Self-signed certificates that are not roots end the walk.
    const next = intermediates.find((c) => c !== cur && c.fingerprint256 !== cur.fingerprint256 && c.ca && cur.checkIssued(c) && cur.verify(c.publicKey))
    if (!next) return 'untrusted'
    if (crls.length > 0 && isRevoked(cur, next, crls)) return 'revoked'
    cur = next
  }
  return 'untrusted'
}

function checkDates(c: X509Certificate, nowMs: number): CertRejection | null {
  if (Date.parse(c.validFrom) > nowMs) return 'not_yet_valid'
  if (Date.parse(c.validTo) < nowMs) return 'expired'
  return null
}

/** What an agent registration pins (RFC 8705 §2.1.2 metadata). Any one configured pin must match; unset pins are ignored. */
export interface CertificatePins {
  subjectDn?: string | null
  sanUri?: string | null
  sanDns?: string | null
  thumbprint?: string | null
}

/**
 * True when the certificate matches every pin that is set (at least one must
 * be set). The subject DN compares attribute by attribute (attribute types
 * case-insensitive, values exact), so `CN=a,O=b` (RFC 4514) matches Node's
 * `CN=a\nO=b`.
 */
export function certificateMatches(cert: X509Certificate, pins: CertificatePins): boolean {
  let any = false
  if (pins.thumbprint) {
    any = true
    if (certThumbprint(cert) !== pins.thumbprint) return false
  }
  if (pins.subjectDn) {
    any = true
    if (!sameDn(pins.subjectDn, cert.subject)) return false
  }
  if (pins.sanUri || pins.sanDns) {
    const sans = subjectAltNames(cert)
    if (pins.sanUri) {
      any = true
      if (!sans.some((s) => s.type === 'URI' && s.value === pins.sanUri)) return false
    }
    if (pins.sanDns) {
      any = true
      const want = pins.sanDns.toLowerCase()
      if (!sans.some((s) => s.type === 'DNS' && s.value.toLowerCase() === want)) return false
    }
  }
  return any
}

/** Subject alternative names as `{type, value}` (`DNS`, `URI`, `IP Address`, `email`). */
export function subjectAltNames(cert: X509Certificate): Array<{ type: string; value: string }> {
  const raw = cert.subjectAltName
  if (!raw) return []
  const out: Array<{ type: string; value: string }> = []
  // Node quotes values holding a comma as JSON strings (since 17.3.1 / CVE-2021-44532).
  const re = /(?:^|,\s*)([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)/g
  for (let m = re.exec(raw); m !== null; m = re.exec(raw)) {
    let value = m[2]!
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string
      } catch {
        continue
      }
    }
    out.push({ type: m[1]!.trim(), value })
  }
  return out
}

function dnParts(dn: string, separator: RegExp): string[] {
  return dn
    .split(separator)
    .map((p) => p.trim())
    .filter((p) => p.length > 0)
    .map((p) => {
      const i = p.indexOf('=')
      return i < 0
        ? p
        : `${p.slice(0, i).trim().toUpperCase()}=${p
            .slice(i + 1)
            .trim()
            .replace(/\\(.)/g, '$1')}`
    })
    .sort()
}

function sameDn(pinned: string, certSubject: string): boolean {
  const a = dnParts(pinned, /(?<!\\),/)
  const b = dnParts(certSubject, /\n/)
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/**
 * The client certificate (PEM) a trusted proxy forwarded, or null. Understands
 * Envoy's `x-forwarded-client-cert` (`By=…;Hash=…;Cert="<url-encoded PEM>"`,
 * elements comma-separated, the last one written by the nearest proxy) and a
 * bare url-encoded PEM (nginx `$ssl_client_escaped_cert`). Throws on a header
 * that is present but unreadable.
 */
export function forwardedCertificate(header: string): X509Certificate | null {
  if (header.length === 0) return null
  if (header.length > MAX_PEM_BYTES) throw new Error('forwarded certificate header too large')
  let encoded: string | undefined
  // url-encoding leaves `-----BEGIN` as is, so a bare (nginx) PEM is told apart by its start.
  if (!header.trimStart().startsWith('-----BEGIN') && /(^|[;,])\s*(Hash|Cert|By|Subject|URI|DNS|Chain)=/i.test(header)) {
    const elements = splitOutside(header, ',')
    const last = elements[elements.length - 1] ?? ''
    for (const pair of splitOutside(last, ';')) {
      const i = pair.indexOf('=')
      if (i < 0) continue
      if (pair.slice(0, i).trim().toLowerCase() !== 'cert') continue
      let v = pair.slice(i + 1).trim()
      if (v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1)
      encoded = v
    }
    if (encoded === undefined) return null
  } else {
    encoded = header
  }
  const pem = decodeURIComponent(encoded.replace(/\+/g, '%2B'))
  const certs = parsePemCertificates(pem)
  if (certs.length === 0) throw new Error('no certificate in the forwarded header')
  return certs[0]!
}

/** Splits on `sep` outside double quotes. */
function splitOutside(s: string, sep: string): string[] {
  const out: string[] = []
  let cur = ''
  let quoted = false
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!
    if (ch === '\\' && quoted && i + 1 < s.length) {
      cur += ch + s[++i]
      continue
    }
    if (ch === '"') quoted = !quoted
    if (ch === sep && !quoted) {
      out.push(cur)
      cur = ''
    } else {
      cur += ch
    }
  }
  out.push(cur)
  return out
}

/** IPv4-mapped IPv6 (`::ffff:1.2.3.4`) compares as IPv4. */
export function normalizeAddress(addr: string): string {
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr
}

/** Where a request's client certificate came from. */
export interface PresentedCertificate {
  cert: X509Certificate
  /** Further certificates the client sent (TLS only), leaf excluded. */
  chain: X509Certificate[]
  via: 'tls' | 'proxy'
}

/** The parts of an incoming request this needs (a node `IncomingMessage` fits). */
export interface CertificateSource {
  socket: {
    remoteAddress?: string | undefined
    encrypted?: boolean
    getPeerX509Certificate?: () => X509Certificate | undefined
    getPeerCertificate?: (detailed: true) => { raw?: Buffer; issuerCertificate?: unknown } | null
  }
  headers: Record<string, string | string[] | undefined>
}

/**
 * The client certificate of a request: from the TLS handshake, or else from
 * `clientCertHeader` when (and only when) the direct peer address is one of
 * `trustedProxies`; a header from anyone else is ignored. Null when none.
 * Throws when a trusted proxy's header is unreadable.
 */
export function presentedCertificate(
  req: CertificateSource,
  tls: { trustedProxies: readonly string[]; clientCertHeader?: string | undefined },
): PresentedCertificate | null {
  const s = req.socket
  if (s.encrypted && typeof s.getPeerX509Certificate === 'function') {
    const cert = s.getPeerX509Certificate()
    if (cert) return { cert, chain: peerChain(req), via: 'tls' }
  }
  const name = tls.clientCertHeader?.toLowerCase()
  if (!name || tls.trustedProxies.length === 0) return null
  const peer = normalizeAddress(s.remoteAddress ?? '')
  if (!tls.trustedProxies.some((p) => normalizeAddress(p) === peer)) return null
  const v = req.headers[name]
  if (v === undefined) return null
  if (Array.isArray(v)) throw new Error('repeated client certificate header')
  const cert = forwardedCertificate(v)
  return cert ? { cert, chain: [], via: 'proxy' } : null
}

function peerChain(req: CertificateSource): X509Certificate[] {
  const out: X509Certificate[] = []
  const detailed = req.socket.getPeerCertificate?.(true)
  let cur = detailed?.issuerCertificate as { raw?: Buffer; issuerCertificate?: unknown } | undefined
  const seen = new Set<string>()
  while (cur?.raw && out.length < MAX_CHAIN_DEPTH) {
    const fp = certThumbprint(cur.raw)
    if (seen.has(fp)) break
    seen.add(fp)
    out.push(new X509Certificate(cur.raw))
    cur = cur.issuerCertificate as typeof cur
  }
  return out
}
