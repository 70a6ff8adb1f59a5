/**
 * MCP 2026-07-28 standard headers (Streamable HTTP, SEP-2243): a client
 * mirrors the JSON-RPC `method` into `Mcp-Method` and the name it acts on
 * into `Mcp-Name`, so load balancers and gateways can route without reading
 * the body, and servers must reject a request whose headers and body
 * disagree (HTTP 400, JSON-RPC -32020 HeaderMismatch). The gateway decides on
 * the body; a proxy in front may route, rate-limit or authorize on the
 * headers. Both must be looking at the same call, so a disagreement is
 * refused here and never forwarded.
 */
import type { IncomingHttpHeaders } from 'node:http'
import { isPlainObject } from '../common.js'
import type { ClientMessage } from './jsonrpc.js'

/** Where `Mcp-Name` comes from in the body, per method. */
const NAME_FIELD: Readonly<Record<string, 'name' | 'uri' | 'taskId'>> = Object.freeze({
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
  'resources/subscribe': 'uri',
  'resources/unsubscribe': 'uri',
  'tasks/get': 'taskId',
  'tasks/update': 'taskId',
  'tasks/cancel': 'taskId',
})

/** First revision whose clients must send the standard headers. */
const HEADERS_REQUIRED_FROM = '2026-07-28'
/** `_meta` key of a 2026-07-28 request's protocol version. */
const META_PROTOCOL_VERSION = 'io.modelcontextprotocol/protocolVersion'

const SENTINEL_PREFIX = '=?base64?'
const SENTINEL_SUFFIX = '?='
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true })

/**
 * A standard header's value: plain, or `=?base64?…?=` (standard Base64 of
 * the UTF-8 bytes) for values that cannot ride in a header as they are.
 * Null when the value claims the encoding and is not canonical Base64 of
 * valid UTF-8: a malformed header, refused like a mismatch.
 */
export function decodeHeaderValue(raw: string): string | null {
  if (!(raw.startsWith(SENTINEL_PREFIX) && raw.endsWith(SENTINEL_SUFFIX) && raw.length >= SENTINEL_PREFIX.length + SENTINEL_SUFFIX.length)) return raw
  const b64 = raw.slice(SENTINEL_PREFIX.length, raw.length - SENTINEL_SUFFIX.length)
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) return null
  const bytes = Buffer.from(b64, 'base64')
  if (bytes.toString('base64') !== b64) return null
  try {
    return STRICT_UTF8.decode(bytes)
  } catch {
    return null
  }
}

/**
 * Why the standard headers of `msg` disagree with it, or null when they
 * agree (or are absent where the request's revision does not require them).
 *
 * - `Mcp-Method`, when sent, must equal the body's `method` (a response,
 *   having no method, must not carry one); it is required on requests and
 *   notifications of revision 2026-07-28 and later (`MCP-Protocol-Version`
 *   header or `_meta["io.modelcontextprotocol/protocolVersion"]`).
 * - `Mcp-Name`, when sent, must equal `params.name` (tools/call,
 *   prompts/get), `params.uri` (resources/read, subscribe, unsubscribe) or
 *   `params.taskId` (tasks/*); sent with any other message, or with a body
 *   that lacks the field, it names something the body does not, and is
 *   refused. Required from 2026-07-28 when the body carries the field.
 * - `MCP-Protocol-Version` and the body's `_meta` protocol version, when both
 *   are given, must be equal.
 *
 * A repeated header arrives joined (`a, a`) or as an array: never equal to
 * the body, so refused.
 */
export function headerMismatch(headers: IncomingHttpHeaders, msg: ClientMessage): string | null {
  const methodHeader = headers['mcp-method']
  const nameHeader = headers['mcp-name']
  const versionHeader = headers['mcp-protocol-version']
  const params = msg.kind === 'response' ? undefined : isPlainObject(msg.raw.params) ? msg.raw.params : undefined
  const meta = params !== undefined && isPlainObject(params._meta) ? params._meta : undefined
  const bodyVersion = meta !== undefined && typeof meta[META_PROTOCOL_VERSION] === 'string' ? meta[META_PROTOCOL_VERSION] : undefined

  if (versionHeader !== undefined && bodyVersion !== undefined && versionHeader !== bodyVersion) {
    return "the MCP-Protocol-Version header does not match the protocol version in the body's _meta"
  }
  const version = typeof versionHeader === 'string' ? versionHeader : bodyVersion
  const required = version !== undefined && version >= HEADERS_REQUIRED_FROM

  if (msg.kind === 'response') {
    if (methodHeader !== undefined || nameHeader !== undefined)
      return 'a JSON-RPC response carries no method or name: Mcp-Method and Mcp-Name must not be sent with it'
    return null
  }

  if (methodHeader === undefined) {
    if (required) return `the Mcp-Method header is required (protocol ${HEADERS_REQUIRED_FROM} and later)`
  } else {
    const m = typeof methodHeader === 'string' ? decodeHeaderValue(methodHeader) : null
    if (m === null) return 'the Mcp-Method header is malformed'
    if (m !== msg.method) return 'the Mcp-Method header does not match the method in the body'
  }

  const field = Object.hasOwn(NAME_FIELD, msg.method) ? NAME_FIELD[msg.method] : undefined
  const bodyName = field !== undefined && params !== undefined && typeof params[field] === 'string' ? params[field] : undefined
  if (nameHeader === undefined) {
    if (required && bodyName !== undefined) return 'the Mcp-Name header is required for this method'
    return null
  }
  const n = typeof nameHeader === 'string' ? decodeHeaderValue(nameHeader) : null
  if (n === null) return 'the Mcp-Name header is malformed'
  if (bodyName === undefined) return 'the Mcp-Name header names something the body does not'
  if (n !== bodyName) return `the Mcp-Name header does not match params.${field ?? 'name'} in the body`
  return null
}
