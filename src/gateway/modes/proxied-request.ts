/**
 * What a reverse-proxy route decides and forwards (docs/reference.md "Gateway",
 * reverse-proxy mode): one reading of the incoming request that both the
 * policy and the upstream get, so the call that runs is the call decided.
 *
 * - path: the raw path must start with the route's prefix byte for byte;
 *   each segment below it is percent-decoded (the policy sees the decoded
 *   path) and forwarded re-encoded in one canonical form. Segments that an
 *   upstream could resolve differently (`.`, `..`, an encoded `/` or `\`,
 *   control characters, empty segments but a trailing one) are refused.
 * - query: decoded into `{key: value | [values…]}` (form rules: `+` is a
 *   space), seen by the policy as `context.http.query`, and forwarded
 *   re-encoded from that object, never from the raw text.
 * - body: `application/json` and every `application/*+json` are parsed
 *   (UTF-8 only, a JSON object, bounded depth) into the call's params and
 *   forwarded re-serialized (after sanitize); a route that declares its
 *   body opaque forwards the bytes unread and the policy sees their SHA-256;
 *   any other body is refused with 415. A body on GET/HEAD, or one with a
 *   `Content-Encoding`, is refused: neither can be decided as sent.
 */
import { AegisError, InvalidRequest } from '../../errors.js'
import { sha256b64url } from '../../lib/hash.js'
import { jsonDepth } from '../../lib/json-limits.js'
import type { HttpCall } from '../../policy/types.js'

/** Most query members accepted on a proxied request. */
export const MAX_QUERY_MEMBERS = 256

const BODYLESS = new Set(['GET', 'HEAD'])
// Characters that must not appear in a decoded segment: separators an upstream may split on, and controls.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what this refuses
const BAD_SEGMENT_CHAR = /[/\\\u0000-\u001f\u007f]/
const JSON_TYPE = /^application\/(?:json|[!#$&^_.+\-A-Za-z0-9]+\+json)$/
// RFC 3986 unreserved characters: decoding and encodeURIComponent leave them as they are (the common case, taken without either).
const UNRESERVED = /^[A-Za-z0-9\-._~]*$/

/** encodeURIComponent, skipped for text it would not change. */
function encodeComponent(s: string): string {
  return UNRESERVED.test(s) ? s : encodeURIComponent(s)
}

/** One proxied request, read once: what the policy sees and what is forwarded. */
export interface ProxiedRequest {
  http: HttpCall
  /** The call's params: the JSON body, or else the query. */
  params: Record<string, unknown>
  /** The JSON text `params` was parsed from (a JSON body); undefined for params taken from the query. */
  paramsText?: string
  /** Canonical path below the prefix ('' or starting with '/'), percent-encoded. */
  forwardPath: string
  /** Canonical query string without `?` ('' when none). */
  forwardQuery: string
  /** The body to forward as is (opaque routes), null for JSON (re-serialized from params) or no body. */
  opaqueBody: Buffer | null
  /** Content-Type to forward: the JSON media type (no parameters) or an opaque body's own; null without a body. */
  contentType: string | null
}

export interface ReadProxiedRequestInput {
  method: string
  /** The request-target as received (`request.raw.url`). */
  rawUrl: string
  /** The route's prefix, without a trailing slash. */
  prefix: string
  headers: Record<string, string | string[] | undefined>
  /** The body bytes, or undefined when none was sent. */
  body: Buffer | undefined
  /** The route forwards its bodies unread (`opaque_body: true`). */
  opaque: boolean
  jsonDepth: number
}

function bad(message: string): AegisError {
  return new InvalidRequest(message)
}

/** Reads a proxied request, or throws `invalid_request` (400) / `unsupported_media_type` (415). */
export function readProxiedRequest(input: ReadProxiedRequestInput): ProxiedRequest {
  const method = input.method.toUpperCase()
  const q = input.rawUrl.indexOf('?')
  const rawPath = q < 0 ? input.rawUrl : input.rawUrl.slice(0, q)
  // The router matched on a decoded path; what is forwarded is cut from the raw one, so they must agree.
  if (!rawPath.startsWith(input.prefix)) throw bad('the request path must name the route prefix as configured, without percent-encoding')
  const { path, forwardPath } = readPath(rawPath.slice(input.prefix.length))
  const { query, forwardQuery } = readQuery(q < 0 ? '' : input.rawUrl.slice(q + 1))

  // fastify never reads a GET or HEAD body: one announced there would be neither decided nor forwarded, so it is refused.
  if (BODYLESS.has(method) && (input.headers['transfer-encoding'] !== undefined || Number(input.headers['content-length'] ?? 0) !== 0)) {
    throw bad(`a ${method} request carries no body through the gateway`)
  }
  const hasBody = input.body !== undefined && input.body.length > 0
  const http: HttpCall = { method, path, query, body: 'none' }
  if (!hasBody) return { http, params: query, forwardPath, forwardQuery, opaqueBody: null, contentType: null }
  const encoding = single(input.headers['content-encoding'])
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
    throw new AegisError('unsupported_media_type', 'encoded request bodies cannot be decided; send the body without Content-Encoding')
  }
  const body = input.body!
  const rawType = single(input.headers['content-type'])
  if (input.opaque) {
    http.body = 'opaque'
    http.bodySha256 = sha256b64url(body)
    return { http, params: query, forwardPath, forwardQuery, opaqueBody: body, contentType: rawType ?? 'application/octet-stream' }
  }
  const type = mediaType(rawType)
  if (type === null || !JSON_TYPE.test(type.essence)) {
    throw new AegisError(
      'unsupported_media_type',
      'this route decides on JSON bodies only (application/json or application/*+json); a route can declare its body opaque',
    )
  }
  if (type.charset !== null && type.charset !== 'utf-8' && type.charset !== 'utf8') {
    throw new AegisError('unsupported_media_type', 'JSON bodies must be UTF-8')
  }
  const text = body.toString('utf8')
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw bad('malformed JSON body')
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw bad('the JSON body must be an object')
  if (jsonDepth(parsed, input.jsonDepth) > input.jsonDepth) throw bad(`JSON nested deeper than ${input.jsonDepth}`)
  http.body = 'json'
  return { http, params: parsed as Record<string, unknown>, paramsText: text, forwardPath, forwardQuery, opaqueBody: null, contentType: type.essence }
}

function single(v: string | string[] | undefined): string | undefined {
  if (Array.isArray(v)) throw bad('repeated content headers are not accepted')
  return v
}

function readPath(suffix: string): { path: string; forwardPath: string } {
  if (suffix === '') return { path: '', forwardPath: '' }
  if (!suffix.startsWith('/')) throw bad('the request path must continue the route prefix with /')
  const raw = suffix.slice(1).split('/')
  const decoded: string[] = []
  const encoded: string[] = []
  for (let i = 0; i < raw.length; i++) {
    const seg = raw[i]!
    if (seg === '' && i !== raw.length - 1) throw bad('empty path segments are not allowed in proxied paths')
    let d = seg
    if (seg.includes('%')) {
      try {
        d = decodeURIComponent(seg)
      } catch {
        throw bad('malformed percent-encoding in the path')
      }
    }
    if (d === '.' || d === '..') throw bad('dot segments are not allowed in proxied paths')
    if (BAD_SEGMENT_CHAR.test(d)) throw bad('encoded separators and control characters are not allowed in proxied paths')
    decoded.push(d)
    encoded.push(encodeComponent(d))
  }
  return { path: `/${decoded.join('/')}`, forwardPath: `/${encoded.join('/')}` }
}

function decodeFormComponent(s: string): string {
  if (!s.includes('%') && !s.includes('+')) return s
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '))
  } catch {
    throw bad('malformed percent-encoding in the query')
  }
}

function readQuery(raw: string): { query: Record<string, string | string[]>; forwardQuery: string } {
  const query: Record<string, string | string[]> = {}
  if (raw === '') return { query, forwardQuery: '' }
  if (raw.includes('#')) throw bad('a request-target carries no fragment')
  let members = 0
  for (const part of raw.split('&')) {
    if (part === '') continue
    if (++members > MAX_QUERY_MEMBERS) throw bad(`more than ${MAX_QUERY_MEMBERS} query members`)
    const eq = part.indexOf('=')
    const key = decodeFormComponent(eq < 0 ? part : part.slice(0, eq))
    const value = decodeFormComponent(eq < 0 ? '' : part.slice(eq + 1))
    // A key the object model cannot hold as data would be seen by neither the policy nor the upstream.
    if (key === '__proto__') throw bad('query key "__proto__" is not accepted')
    const prev = Object.hasOwn(query, key) ? query[key] : undefined
    query[key] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value]
  }
  return { query, forwardQuery: encodeQuery(query) }
}

/** The canonical query string of a decoded query (keys in first-seen order, repeated values in order). */
export function encodeQuery(query: Record<string, string | string[]>): string {
  const parts: string[] = []
  for (const key of Object.keys(query)) {
    const k = encodeComponent(key)
    const v = query[key]!
    if (typeof v === 'string') parts.push(`${k}=${encodeComponent(v)}`)
    else for (const value of v) parts.push(`${k}=${encodeComponent(value)}`)
  }
  return parts.join('&')
}

/** The media type's essence (lower case) and charset, or null when there is none or it is malformed. */
const PLAIN_JSON = { essence: 'application/json', charset: null } as const

function mediaType(header: string | undefined): { essence: string; charset: string | null } | null {
  if (header === undefined) return null
  if (header === 'application/json') return PLAIN_JSON
  const [head, ...params] = header.split(';')
  const essence = head!.trim().toLowerCase()
  if (!/^[^/\s]+\/[^/\s]+$/.test(essence)) return null
  let charset: string | null = null
  for (const p of params) {
    const eq = p.indexOf('=')
    if (eq < 0) continue
    if (p.slice(0, eq).trim().toLowerCase() === 'charset')
      charset = p
        .slice(eq + 1)
        .trim()
        .replace(/^"(.*)"$/, '$1')
        .toLowerCase()
  }
  return { essence, charset }
}
