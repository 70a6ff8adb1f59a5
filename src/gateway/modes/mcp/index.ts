import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { RouteConfig } from '../../../config/schema.js'
import { AegisError } from '../../../errors.js'
import type { GatewayDeps } from '../../deps.js'
import type { DecisionOutcome, DecisionPipeline } from '../../pipeline/index.js'
import type { TokenView } from '../../pipeline/token-view.js'
import { bearerOf, blocks, header, isPlainObject, sendFailure, TOOL_NAME } from '../common.js'
import { authenticate, manifestOf } from './authenticate.js'
import { McpApprovals, withoutSpentState, type ApprovalCall } from './elicitation.js'
import { initializeRewrite } from './capabilities.js'
import { DECISION_META_KEY, OVERRIDE_META_KEY } from './decision-meta.js'
import {
  classify,
  DEFAULT_ALLOW_METHODS,
  FORBIDDEN_ORIGIN,
  GATEWAY_ERROR,
  HEADER_MISMATCH,
  INTERNAL_ERROR,
  INVALID_PARAMS,
  INVALID_REQUEST,
  METHOD_NOT_FOUND,
  methodAllowed,
  rpcError,
  type ClientMessage,
  type JsonRpcId,
} from './jsonrpc.js'
import { reservedAction } from './method-actions.js'
import { DECIDED_METHODS, decideMethod } from './method-decisions.js'
import { completionRefusal, LISTS, listFilter } from './method-lists.js'
import { mcpWwwAuthenticate, registerProtectedResourceMetadata } from './metadata.js'
import { originPolicy, originRefusal, type OriginPolicy } from './origin-guard.js'
import { redactToolResult, resultObligations } from './result-redaction.js'
import { isResponse, rewriteSse, type ResponseRewrite, type SseInjector } from './sse.js'
import { headerMismatch } from './standard-headers.js'
import { ToolVisibility } from './tool-visibility.js'
import { FORWARD_RESPONSE, Upstream, upstreamHeaders } from './upstream.js'

export { PRM_PATH, metadataUrl, mcpWwwAuthenticate, registerProtectedResourceMetadata } from './metadata.js'
export { redactToolResult, resultObligations } from './result-redaction.js'
export { ToolVisibility } from './tool-visibility.js'
export { DEFAULT_ALLOW_METHODS } from './jsonrpc.js'

export { DECISION_META_KEY, OVERRIDE_META_KEY } from './decision-meta.js'
/** Largest upstream response (or SSE event) the gateway reads to rewrite it. */
export const MAX_REWRITE_BYTES = 8 * 1024 * 1024

const EMPTY_PARAMS: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>
const SMALL_BODY_BYTES = 64 * 1024

const RESUMED_RESPONSE = 'a response replayed on the GET stream cannot be checked by the Aegis gateway; call again'

/** A checked MCP route. */
interface McpRoute {
  path: string
  resource: string
  allow: readonly string[]
  upstream: Upstream
  /** DNS-rebinding protection: which `Host` and `Origin` values the route accepts. */
  origin: OriginPolicy
}

/** The route's path without trailing slashes, and its allowed methods (both checked by config/load.ts). */
function routeBasics(r: RouteConfig): { path: string; allow: readonly string[] } {
  return { path: r.path.replace(/\/+$/, ''), allow: Object.freeze([...(r.allow_methods ?? DEFAULT_ALLOW_METHODS)]) }
}

/**
 * MCP mode (docs/reference.md "Gateway", docs/mcp.md): each `mode: "mcp"` route of
 * `gateway.routes` proxies MCP Streamable HTTP (POST JSON-RPC, JSON or SSE
 * answers, the GET stream, DELETE of a session, `Mcp-Session-Id` both ways)
 * to its `upstream`, requiring the agent's Aegis token on every request and
 * never forwarding it.
 *
 * - `tools/call`: the decision pipeline runs with the tool name as action,
 *   `arguments` as params and the route path as resource (mode `mcp`);
 *   `allow` forwards, `sanitize` forwards the sanitized arguments and
 *   applies `redact:/result/…` obligations to the result, `deny` and
 *   `approval_needed` answer a tool result with `isError: true` (MCP "tools",
 *   error handling: errors the model should see and act on) carrying the
 *   reasons, and the approval id and status URL, under `_meta["aegis/decision"]`.
 * - `tools/list`: only the tools ToolVisibility lets the agent see.
 * - `resources/read`, `resources/subscribe`, `prompts/get`: decided the same
 *   way (method-decisions.ts); the resource and prompt listings are filtered
 *   like `tools/list` (method-lists.ts); `initialize` advertises only the
 *   capabilities the route lets through (capabilities.ts).
 * - Every method passes only when the route's `allow_methods` lists it
 *   (default: DEFAULT_ALLOW_METHODS), else JSON-RPC -32601. JSON-RPC
 *   batches are refused (-32600), and so is a
 *   request method sent without an id: only `notifications/*` pass as
 *   notifications.
 * - `Mcp-Method` / `Mcp-Name` (MCP 2026-07-28) that disagree with the body:
 *   HTTP 400, JSON-RPC -32020, never forwarded (standard-headers.ts).
 * - A `Host` or `Origin` the route does not allow (`allowed_hosts`,
 *   `allowed_origins`): HTTP 403 before anything else (origin-guard.ts).
 * - Result redaction and tool filtering apply to the upstream's answer
 *   whatever its HTTP status; an answer that must be checked and cannot be
 *   is never passed on.
 * - 401s carry `WWW-Authenticate: Bearer resource_metadata=…` pointing at the
 *   route's RFC 9728 metadata, which is registered here too.
 */
export function registerMcpRoutes(app: FastifyInstance, pipeline: DecisionPipeline, deps: GatewayDeps, routes: readonly RouteConfig[]): void {
  const mcp = routes.filter((r) => r.mode === 'mcp')
  if (mcp.length === 0) return
  registerProtectedResourceMetadata(app, deps.config, mcp)
  const visibility = new ToolVisibility(deps)
  const approvals = new McpApprovals(deps)
  app.addHook('onClose', async () => approvals.close())
  for (const r of mcp) {
    const { path, allow } = routeBasics(r)
    const route: McpRoute = { path, resource: path, allow, upstream: new Upstream(new URL(r.upstream)), origin: originPolicy(r, deps.config.gateway.host) }
    app.addHook('onClose', async () => {
      await route.upstream.close()
    })
    registerRoute(app, pipeline, deps, visibility, approvals, route)
  }
}

function registerRoute(
  app: FastifyInstance,
  pipeline: DecisionPipeline,
  deps: GatewayDeps,
  visibility: ToolVisibility,
  approvals: McpApprovals,
  route: McpRoute,
): void {
  function fail(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
    if (err instanceof AegisError && err.code === 'invalid_token') reply.header('www-authenticate', mcpWwwAuthenticate(request, route.path, err.message))
    return sendFailure(reply, request, err)
  }

  function rpc(reply: FastifyReply, status: number, message: Record<string, unknown>): FastifyReply {
    return reply.code(status).header('cache-control', 'no-store').type('application/json').send(JSON.stringify(message))
  }

  /** Sends the request upstream and the answer back, rewriting JSON-RPC responses with `rewrite` when given. */
  async function forward(
    request: FastifyRequest,
    reply: FastifyReply,
    method: 'GET' | 'POST' | 'DELETE',
    body: string | null,
    view: TokenView,
    rewrite: ResponseRewrite | null,
    requestId: JsonRpcId | null,
    onSse?: SseInjector,
  ): Promise<FastifyReply> {
    const abort = new AbortController()
    // The client left before the answer was complete: stop the upstream request (an abort after a finished reply would only cost a DOMException).
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) abort.abort()
    })
    let res: Dispatcher.ResponseData
    try {
      res = await route.upstream.request(method, upstreamHeaders(request.headers, view.facts.agentId, view.facts.tenant, method === 'POST'), body, abort.signal)
    } catch (err) {
      request.log.warn({ err, route: route.path }, 'MCP upstream unreachable')
      return rpc(reply, 502, rpcError(requestId, INTERNAL_ERROR, 'the upstream MCP server is unreachable'))
    }
    for (const name of FORWARD_RESPONSE) {
      const v = res.headers[name]
      if (v !== undefined) reply.header(name, v)
    }
    reply.code(res.statusCode)
    const type = String(res.headers['content-type'] ?? '').toLowerCase()
    // Whatever the status: an error status does not make a result any less a result (a 500 may carry one).
    if (rewrite !== null && res.statusCode !== 202 && res.statusCode !== 204) {
      if (type.startsWith('text/event-stream')) {
        reply.header('x-accel-buffering', 'no')
        return reply.send(rewriteSse(res.body, rewrite, MAX_REWRITE_BYTES, onSse))
      }
      if (type.startsWith('application/json')) return sendRewrittenJson(request, reply, res.statusCode, res.body, rewrite, requestId)
      // An answer that must be checked but is neither JSON nor SSE is not passed on; an empty one has nothing to check.
      if (!(await hasContent(res.body))) return reply.send()
      return withheld(
        reply,
        res.statusCode,
        requestId,
        `the upstream MCP server answered HTTP ${res.statusCode} with ${type.slice(0, 64) || 'no content type'}, which the gateway cannot check`,
      )
    }
    if (res.statusCode === 202 || res.statusCode === 204 || (method === 'DELETE' && type === '')) {
      await res.body.dump()
      return reply.send()
    }
    const length = Number(res.headers['content-length'] ?? NaN)
    if (length >= 0 && length <= SMALL_BODY_BYTES) {
      // A small body of known length is cheaper to send as one buffer than to pipe as a stream.
      return reply.send(Buffer.from(await res.body.arrayBuffer()))
    }
    return reply.send(res.body)
  }

  async function sendRewrittenJson(
    request: FastifyRequest,
    reply: FastifyReply,
    status: number,
    source: Readable,
    rewrite: ResponseRewrite,
    requestId: JsonRpcId | null,
  ): Promise<FastifyReply> {
    let text: string
    try {
      text = await readCapped(source, MAX_REWRITE_BYTES)
    } catch (err) {
      request.log.warn({ err, route: route.path }, 'MCP upstream response unreadable or too large')
      return withheld(reply, status, requestId, 'the upstream MCP server answered with a response the gateway cannot check')
    }
    if (text.length === 0) return reply.send()
    let msg: unknown
    try {
      msg = JSON.parse(text)
    } catch {
      return withheld(reply, status, requestId, 'the upstream MCP server answered with malformed JSON')
    }
    // Only JSON-RPC responses can be checked (rewritten or replaced); any other JSON is not passed on.
    const messages = Array.isArray(msg) ? msg : [msg]
    if (messages.length === 0 || !messages.every(isResponse)) {
      return withheld(
        reply,
        status,
        requestId,
        `the upstream MCP server answered HTTP ${status} with JSON that is not a JSON-RPC response, which the gateway cannot check`,
      )
    }
    const out = Array.isArray(msg) ? messages.map((m) => rewrite(m)) : rewrite(msg as Record<string, unknown>)
    return reply.type('application/json').send(JSON.stringify(out))
  }

  /**
   * Answers in place of an upstream answer that could not be checked: an
   * upstream error status is kept (a 404 still tells the client its session
   * is gone), anything else becomes 502; the body is a JSON-RPC error.
   */
  function withheld(reply: FastifyReply, status: number, requestId: JsonRpcId | null, message: string): FastifyReply {
    return rpc(reply, status >= 400 && status <= 599 ? status : 502, rpcError(requestId, INTERNAL_ERROR, message))
  }

  /** Rewrites the response to `id`; any other response in the stream is replaced by an error (it was not checked). */
  function only(id: JsonRpcId | null, rewrite: ResponseRewrite | null): ResponseRewrite {
    return (m) => {
      if (id !== null && m.id === id) return rewrite === null ? m : rewrite(m)
      // An error answering no request (id null: the server could not read it) carries no result: nothing to check.
      if (m.id === null && !('result' in m)) return m
      return rpcError(typeof m.id === 'string' || typeof m.id === 'number' ? m.id : null, GATEWAY_ERROR, RESUMED_RESPONSE)
    }
  }

  async function toolsCall(
    request: FastifyRequest,
    reply: FastifyReply,
    token: string,
    msg: Extract<ClientMessage, { kind: 'request' }>,
  ): Promise<FastifyReply> {
    const params = msg.params ?? EMPTY_PARAMS
    const name = params.name
    const args = params.arguments === undefined || params.arguments === null ? EMPTY_PARAMS : params.arguments
    if (typeof name !== 'string' || !TOOL_NAME.test(name) || reservedAction(name) || !isPlainObject(args)) {
      await authenticate(deps, token, typeof name === 'string' ? name.slice(0, 256) : 'unknown', route.resource, request)
      return rpc(
        reply,
        200,
        rpcError(msg.id, INVALID_PARAMS, 'tools/call needs params.name (a tool name: letters, digits, . _ : / -) and params.arguments (an object)'),
      )
    }
    const meta = isPlainObject(params._meta) ? params._meta : null
    const metaOverride = meta !== null && typeof meta[OVERRIDE_META_KEY] === 'string' ? meta[OVERRIDE_META_KEY] : null
    // Approvals in the conversation (elicitation.ts): the retry of an approved call is decided with the override the gateway fetches.
    const call: ApprovalCall = {
      id: msg.id,
      channel: approvals.channel(request.headers, params),
      params,
      token,
      tool: name,
      args,
      resource: route.resource,
      authenticate: () => authenticate(deps, token, name, route.resource, request),
    }
    const prepared = await approvals.prepare(call)
    if (prepared.answer !== null) return rpc(reply, 200, prepared.answer)
    let outcome: DecisionOutcome
    try {
      outcome = await pipeline.decide({
        token,
        tool: name,
        params: args,
        resource: route.resource,
        dryRun: false,
        override: header(request, 'aegis-override') ?? metaOverride ?? prepared.override,
        clientAddress: request.ip,
        mode: 'mcp',
        sender: request,
      })
    } catch (err) {
      const answer = approvals.overrideRefused(call, prepared, err)
      if (answer === null) throw err
      return rpc(reply, 200, answer)
    }
    if (blocks(outcome)) return rpc(reply, 200, approvals.answer(call, outcome) ?? approvals.complete(call.channel, refusal(msg.id, outcome)))
    const sanitized = outcome.enforced && outcome.obligations.length > 0
    let forwarded = msg.raw
    if (sanitized || (meta !== null && OVERRIDE_META_KEY in meta) || prepared.stateSpent === true) {
      const p: Record<string, unknown> = {
        ...(prepared.stateSpent === true ? withoutSpentState(params) : params),
        arguments: sanitized ? outcome.params : args,
      }
      if (meta !== null && OVERRIDE_META_KEY in meta) {
        // The override token is the agent's credential for this one call: it never reaches the tool server.
        const { [OVERRIDE_META_KEY]: _dropped, ...rest } = meta
        p._meta = rest
      }
      forwarded = { ...msg.raw, params: p }
    }
    const redactions = outcome.enforced ? resultObligations(outcome.obligations) : []
    const rewrite: ResponseRewrite | null =
      redactions.length === 0 ? null : (m) => ('result' in m ? { ...m, result: redactToolResult(m.result, redactions) } : m)
    return forward(request, reply, 'POST', JSON.stringify(forwarded), outcome.token, rewrite === null ? null : only(msg.id, rewrite), msg.id)
  }

  async function toolsList(
    request: FastifyRequest,
    reply: FastifyReply,
    view: TokenView,
    msg: Extract<ClientMessage, { kind: 'request' }>,
  ): Promise<FastifyReply> {
    const manifest = await manifestOf(deps, view)
    const filter: ResponseRewrite = (m) => {
      const result = m.result
      if (!isPlainObject(result) || !Array.isArray(result.tools)) return m
      const names = result.tools.map((t: unknown) => (isPlainObject(t) && typeof t.name === 'string' ? t.name : ''))
      const visible = visibility.visible(view, manifest, names, route.resource, request.ip)
      return { ...m, result: { ...result, tools: result.tools.filter((_t: unknown, k: number) => visible.has(names[k]!)) } }
    }
    return forward(request, reply, 'POST', JSON.stringify(msg.raw), view, only(msg.id, filter), msg.id)
  }

  async function post(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const token = bearerOf(request)
    try {
      const body = request.body
      // Streamable HTTP messages are JSON; a form body the server's other parsers accept is not one.
      const json = String(request.headers['content-type'] ?? '')
        .toLowerCase()
        .startsWith('application/json')
      const msg: ClientMessage | string = !json
        ? 'MCP messages are sent as Content-Type: application/json'
        : Array.isArray(body)
          ? 'JSON-RPC batches are not supported through the Aegis gateway (MCP 2025-06-18 removed them): send one message per request'
          : classify(body)
      if (typeof msg !== 'string') {
        // Before anything is decided: a proxy in front may have routed or authorized on these headers.
        const mismatch = headerMismatch(request.headers, msg)
        if (mismatch !== null) return rpc(reply, 400, rpcError(msg.kind === 'notification' ? null : msg.id, HEADER_MISMATCH, mismatch))
      }
      if (typeof msg !== 'string' && msg.kind === 'request' && msg.method === 'initialize') {
        // Once answered, the session it opened is known: remember whether its client shows URL elicitations (elicitation.ts).
        reply.raw.once('finish', () => approvals.initialized(reply.getHeader('mcp-session-id'), msg.params))
      }
      if (typeof msg !== 'string' && msg.kind === 'request' && msg.method === 'tools/call' && methodAllowed(route.allow, 'tools/call')) {
        return await toolsCall(request, reply, token!, msg)
      }
      if (typeof msg !== 'string' && msg.kind === 'request' && DECIDED_METHODS.has(msg.method) && methodAllowed(route.allow, msg.method)) {
        const plan = await decideMethod(pipeline, deps, route.resource, request, token, msg)
        if ('answer' in plan) return rpc(reply, 200, plan.answer)
        return await forward(request, reply, 'POST', plan.body, plan.view, plan.rewrite === null ? null : only(msg.id, plan.rewrite), msg.id)
      }
      const view = await authenticate(
        deps,
        token,
        typeof msg === 'string' ? 'unknown' : msg.kind === 'response' ? 'response' : msg.method.slice(0, 256),
        route.resource,
        request,
      )
      if (typeof msg === 'string') return rpc(reply, 400, rpcError(null, INVALID_REQUEST, msg))
      if (msg.kind !== 'response' && !methodAllowed(route.allow, msg.method)) {
        const text = `method "${msg.method.slice(0, 64)}" is not allowed through this gateway route`
        // A notification has no id to answer: an HTTP error status (Streamable HTTP), with the reason.
        return msg.kind === 'request' ? rpc(reply, 200, rpcError(msg.id, METHOD_NOT_FOUND, text)) : rpc(reply, 403, rpcError(null, METHOD_NOT_FOUND, text))
      }
      if (msg.kind === 'request' && msg.method === 'tools/list') return await toolsList(request, reply, view, msg)
      if (msg.kind === 'request' && msg.method === 'initialize') {
        return await forward(request, reply, 'POST', JSON.stringify(msg.raw), view, only(msg.id, initializeRewrite(route.allow)), msg.id)
      }
      if (msg.kind === 'request' && (Object.hasOwn(LISTS, msg.method) || msg.method === 'completion/complete')) {
        const manifest = await manifestOf(deps, view)
        if (msg.method === 'completion/complete') {
          const refused = completionRefusal(msg.params, manifest)
          if (refused !== null) return rpc(reply, 200, rpcError(msg.id, INVALID_PARAMS, refused))
          return await forward(request, reply, 'POST', JSON.stringify(msg.raw), view, null, msg.id)
        }
        const filter = listFilter(msg.method, visibility, view, manifest, route.resource, request.ip)
        return await forward(request, reply, 'POST', JSON.stringify(msg.raw), view, only(msg.id, filter), msg.id)
      }
      return await forward(request, reply, 'POST', JSON.stringify(msg.raw), view, null, msg.kind === 'request' ? msg.id : null)
    } catch (err) {
      return fail(request, reply, err)
    }
  }

  async function getStream(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    try {
      const view = await authenticate(deps, bearerOf(request), 'mcp:stream', route.resource, request)
      // The GET stream carries server requests and notifications; a response there is a resumed one the gateway never checked.
      return await forward(request, reply, 'GET', null, view, only(null, null), null, approvals.streamOpened(request.headers['mcp-session-id']) ?? undefined)
    } catch (err) {
      return fail(request, reply, err)
    }
  }

  async function endSession(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    try {
      const view = await authenticate(deps, bearerOf(request), 'mcp:session', route.resource, request)
      return await forward(request, reply, 'DELETE', null, view, null, null)
    } catch (err) {
      return fail(request, reply, err)
    }
  }

  app.register(async (scope) => {
    // No token at all: 401 before the body is even read.
    scope.addHook('onRequest', async (request, reply) => {
      // DNS-rebinding protection first, as the MCP SDKs do it: a page the route does not trust learns nothing, not even that a token is needed.
      const refusal = originRefusal(route.origin, request.headers)
      if (refusal !== null) {
        request.log.info({ route: route.path, reason: refusal }, 'MCP request refused: Host or Origin not allowed')
        return rpc(reply, 403, rpcError(null, FORBIDDEN_ORIGIN, refusal))
      }
      if (bearerOf(request) === undefined) {
        reply.header('www-authenticate', mcpWwwAuthenticate(request, route.path, 'a bearer token is required'))
        return reply.code(401).header('cache-control', 'no-store').send({ error: 'invalid_token', error_description: 'a bearer token is required' })
      }
      return undefined
    })
    scope.post(route.path, post)
    scope.get(route.path, getStream)
    scope.delete(route.path, endSession)
  })
}

/** The tool result a refused call answers with (MCP: tool errors are results with `isError`, so the model sees them). */
function refusal(id: JsonRpcId, o: DecisionOutcome): Record<string, unknown> {
  const decision: Record<string, unknown> = { decision: o.decision, reasons: o.reasons, policy_version: o.policyVersion }
  let text: string
  if (o.decision === 'approval_needed') {
    if (o.approval !== null) {
      decision.approval = o.approval
      text =
        `This call needs human approval (approval ${o.approval.id}). Poll ${o.approval.status_url} with the same bearer token; once approved, ` +
        `make exactly the same call again with the override_token in the Aegis-Override header (or in params._meta["${OVERRIDE_META_KEY}"]). ` +
        `Reasons: ${o.reasons.join('; ')}`
    } else {
      text = `This call needs human approval, but this gateway cannot open approval requests. Reasons: ${o.reasons.join('; ')}`
    }
  } else {
    text = `Aegis denied this call (policy ${o.policyVersion}): ${o.reasons.join('; ')}`
  }
  return { jsonrpc: '2.0', id, result: { content: [{ type: 'text', text }], isError: true, _meta: { [DECISION_META_KEY]: decision } } }
}

/** True when `source` yields at least one byte; consumes it either way (an answer read to be withheld is never sent). */
async function hasContent(source: Readable): Promise<boolean> {
  for await (const chunk of source) {
    if ((chunk as Buffer).length > 0) {
      source.destroy()
      return true
    }
  }
  return false
}

async function readCapped(source: Readable, max: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of source) {
    const b = chunk as Buffer
    size += b.length
    if (size > max) {
      source.destroy()
      throw new Error(`response larger than ${max} bytes`)
    }
    chunks.push(b)
  }
  return Buffer.concat(chunks).toString('utf8')
}
