import type { IncomingHttpHeaders } from 'node:http'
import { createRequire } from 'node:module'
import type { Dispatcher, Pool } from 'undici'

/**
 * Request headers passed to the upstream MCP server: what Streamable HTTP
 * needs, plus W3C trace context. An allow-list, so the agent's
 * `Authorization`, cookies and any `x-aegis-*` a client sent never reach
 * the upstream; `accept-encoding` is left out so streams arrive uncompressed
 * and can be read. `Mcp-Method` and `Mcp-Name` (MCP 2026-07-28) pass once
 * checked equal to the body (standard-headers.ts); `Mcp-Param-*` headers,
 * which mirror arguments the gateway may have sanitized, never do. `Origin`
 * and the caller's `Host` stay here too: the gateway checked them for the
 * route (origin-guard.ts), and the upstream sees the gateway's.
 */
const FORWARD_REQUEST = [
  'accept',
  'content-type',
  'mcp-session-id',
  'mcp-protocol-version',
  'mcp-method',
  'mcp-name',
  'last-event-id',
  'traceparent',
  'tracestate',
  'baggage',
  'user-agent',
]
/** Response headers passed back to the client. */
export const FORWARD_RESPONSE = ['content-type', 'cache-control', 'mcp-session-id', 'mcp-protocol-version', 'retry-after', 'allow']

/** Longest wait for an upstream's response headers (a JSON-mode server answers after the tool ran). */
const HEADERS_TIMEOUT_MS = 300_000

/** Headers that mirror the body: forwarded only with a body they were checked against. */
const MIRRORS = new Set(['mcp-method', 'mcp-name'])

/**
 * Headers for the upstream request, with the gateway's verdict on who calls.
 * `mirrorsChecked`: the body's `Mcp-Method` / `Mcp-Name` were checked (a
 * POST); otherwise they are not forwarded.
 */
export function upstreamHeaders(incoming: IncomingHttpHeaders, agentId: string, tenant: string, mirrorsChecked = false): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of FORWARD_REQUEST) {
    const v = incoming[name]
    if (typeof v === 'string' && (mirrorsChecked || !MIRRORS.has(name))) out[name] = v
  }
  out['x-aegis-agent'] = agentId
  out['x-aegis-tenant'] = tenant
  return out
}

/** One upstream MCP endpoint: a keep-alive connection pool and the endpoint's path. */
export class Upstream {
  private readonly pool: Pool
  readonly path: string

  constructor(url: URL) {
    // bodyTimeout 0: the GET stream and long tool calls stay open as long as both sides want.
    // Required here: undici is ~110 module files a gateway without MCP routes never needs at start-up.
    const { Pool: UndiciPool } = createRequire(import.meta.url)('undici') as typeof import('undici')
    this.pool = new UndiciPool(url.origin, { connections: 256, keepAliveTimeout: 30_000, headersTimeout: HEADERS_TIMEOUT_MS, bodyTimeout: 0 })
    this.path = (url.pathname === '' ? '/' : url.pathname) + url.search
  }

  request(method: 'GET' | 'POST' | 'DELETE', headers: Record<string, string>, body: string | null, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
    return this.pool.request({ path: this.path, method, headers, body, signal })
  }

  /** Called once the server stopped taking requests: anything still open upstream (a GET stream) is cut, never waited for. */
  close(): Promise<void> {
    return this.pool.destroy()
  }
}
