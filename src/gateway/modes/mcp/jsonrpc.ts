/**
 * The slice of JSON-RPC 2.0 (as MCP uses it) the gateway needs to read and
 * write. Hand-written: the SDK's zod schemas would cost more than the call
 * itself on the hot path, and the gateway only needs the envelope.
 */
import { isPlainObject } from '../common.js'

/** A JSON-RPC id: string or number (MCP forbids null ids on requests). */
export type JsonRpcId = string | number

/** One client-to-server message, classified. */
export type ClientMessage =
  | { kind: 'request'; id: JsonRpcId; method: string; params: Record<string, unknown> | undefined; raw: Record<string, unknown> }
  | { kind: 'notification'; method: string; raw: Record<string, unknown> }
  | { kind: 'response'; id: JsonRpcId; raw: Record<string, unknown> }

/** JSON-RPC error codes (JSON-RPC 2.0 §5.1). */
export const INVALID_REQUEST = -32600
export const METHOD_NOT_FOUND = -32601
export const INVALID_PARAMS = -32602
export const INTERNAL_ERROR = -32603
/** Server-defined (-32000…-32099): the gateway refused or could not check something. */
export const GATEWAY_ERROR = -32001
/** MCP 2026-07-28 HeaderMismatch: `Mcp-Method` / `Mcp-Name` / `MCP-Protocol-Version` missing, malformed or not matching the body. */
export const HEADER_MISMATCH = -32020
/** DNS-rebinding refusals (`Origin`, `Host`), as the MCP SDKs answer them. */
export const FORBIDDEN_ORIGIN = -32000

/** Methods that are notifications (MCP: every notification method is under `notifications/`). */
const NOTIFICATION_PREFIX = 'notifications/'

const MAX_METHOD_LENGTH = 256
const MAX_STRING_ID = 256

function isId(v: unknown): v is JsonRpcId {
  return (typeof v === 'string' && v.length <= MAX_STRING_ID) || (typeof v === 'number' && Number.isFinite(v))
}

/**
 * Classifies one message, or returns a reason it is not a valid JSON-RPC 2.0
 * message. A message without an `id` is a notification only when its method
 * is a `notifications/*` one: any other method without an id is refused, so
 * a `tools/call` can never pass as a notification, undecided.
 */
export function classify(body: unknown): ClientMessage | string {
  if (!isPlainObject(body)) return 'a JSON-RPC message must be a JSON object'
  if (body.jsonrpc !== '2.0') return 'jsonrpc must be "2.0"'
  const method = body.method
  if (method !== undefined) {
    if (typeof method !== 'string' || method.length === 0 || method.length > MAX_METHOD_LENGTH) return 'method must be a non-empty string'
    const params = body.params
    if (params !== undefined && !isPlainObject(params)) return 'params must be an object'
    if (!('id' in body)) {
      // A request method without an id would run with no answer and, worse, with no decision: only notifications/* may go without one.
      if (!method.startsWith(NOTIFICATION_PREFIX))
        return `"${method.slice(0, 64)}" is a request method: it needs an id (JSON-RPC notifications are notifications/* only)`
      return { kind: 'notification', method, raw: body }
    }
    if (!isId(body.id)) return 'id must be a string or a number'
    return { kind: 'request', id: body.id, method, params, raw: body }
  }
  if (('result' in body || 'error' in body) && isId(body.id)) return { kind: 'response', id: body.id, raw: body }
  return 'not a JSON-RPC request, notification or response'
}

/** A JSON-RPC error response (id null when the request's id is unknown). */
export function rpcError(id: JsonRpcId | null, code: number, message: string, data?: unknown): Record<string, unknown> {
  const error: Record<string, unknown> = { code, message }
  if (data !== undefined) error.data = data
  return { jsonrpc: '2.0', id, error }
}

/** True when `method` is matched by an allow-list entry: exact, or a `prefix/*` entry. */
export function methodAllowed(allow: readonly string[], method: string): boolean {
  for (const a of allow) {
    if (a === method) return true
    if (a.endsWith('/*') && method.startsWith(a.slice(0, -1))) return true
  }
  return false
}

/**
 * Default `allow_methods` of an MCP route: every method the gateway either
 * decides (`tools/call`, `resources/read`, `resources/subscribe`,
 * `prompts/get`), filters (the listings) or that reaches nothing an agent
 * could not otherwise use (`completion/complete` is checked against the
 * agent's capabilities). Methods the gateway knows nothing about
 * (`tasks/*`, future ones) are left out: a route lists them to pass them.
 */
export const DEFAULT_ALLOW_METHODS: readonly string[] = Object.freeze([
  'initialize',
  'ping',
  'notifications/*',
  'tools/list',
  'tools/call',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'prompts/list',
  'prompts/get',
  'completion/complete',
  'logging/setLevel',
])
