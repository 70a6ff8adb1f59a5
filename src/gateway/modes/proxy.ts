import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { injectContext } from '../../observability/tracing.js'
import { outgoingContext } from '../../observability/request-context.js'
import replyFrom from '@fastify/reply-from'
import type { IncomingHttpHeaders } from 'node:http'
import { AegisError } from '../../errors.js'
import type { RouteConfig } from '../../config/schema.js'
import type { Logger } from '../../observability/logger.js'
import type { DecisionOutcome, DecisionPipeline, DecisionRequest } from '../pipeline/index.js'
import { bearerOf, blocks, deniedBody, header, isPlainObject, MAX_RESOURCE_LENGTH, sendFailure, TOOL_NAME } from './common.js'

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']
const EMPTY_PARAMS: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>
const BODYLESS = new Set(['GET', 'HEAD'])
// `.`/`..` segments, plain or percent-encoded (and encoded slashes/backslashes): an upstream that normalizes them could be reached outside the route's path.
const DOT_SEGMENT = /(?:^|\/|%2f|\\|%5c)(?:\.|%2e){1,2}(?:\/|%2f|\\|%5c|$)/i

declare module 'fastify' {
  interface FastifyRequest {
    aegisOutcome?: DecisionOutcome
  }
}

/**
 * Headers never forwarded upstream: the agent's credential and Aegis's own
 * request headers (`Aegis-*`), and any `x-aegis-*` a client sent, which
 * would otherwise pose as the gateway's verdict.
 */
function rewriteHeaders(request: { aegisOutcome?: DecisionOutcome }, headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {}
  for (const name in headers) {
    if (name === 'authorization' || name === 'proxy-authorization' || name === 'dpop' || name.startsWith('aegis-') || name.startsWith('x-aegis-')) continue
    out[name] = headers[name]
  }
  const o = request.aegisOutcome
  if (o) {
    out['x-aegis-agent'] = o.token.facts.agentId
    out['x-aegis-tenant'] = o.token.facts.tenant
    out['x-aegis-decision'] = o.decision
  }
  // W3C trace context passed on with the decision span as the parent (a no-op without an incoming traceparent).
  const trace: Record<string, string> = {}
  injectContext(outgoingContext(), trace)
  Object.assign(out, trace)
  return out
}

/**
 * Reverse-proxy mode (DESIGN.md "Gateway"): each `mode: "proxy"` route of
 * `gateway.routes` forwards `<path>/**` to its upstream (the route prefix is
 * replaced by the upstream URL's path) after a decision on every request.
 * The tool is the route's `tool`, else the `Aegis-Tool` header; the
 * parameters are the JSON object body, else the query string. Only allowed
 * calls are forwarded; `sanitize` forwards the body with its obligations
 * applied (a sanitize decision on a non-JSON request is refused, since it
 * cannot be applied). The Authorization header is stripped; W3C
 * `traceparent`/`tracestate` pass through. `mode: "mcp"` routes are served by
 * modes/mcp.
 */
export function registerProxyRoutes(app: FastifyInstance, pipeline: DecisionPipeline, routes: readonly RouteConfig[], logger: Logger): void {
  for (const route of routes) {
    // MCP routes are registered by modes/mcp.
    if (route.mode !== 'proxy') continue
    const upstream = new URL(route.upstream)
    const upstreamPath = upstream.pathname.replace(/\/+$/, '')
    const prefix = route.path.replace(/\/+$/, '')
    app.register(async (scope) => {
      // Non-JSON bodies are forwarded untouched.
      scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))
      await scope.register(replyFrom, { base: upstream.origin, disableRequestLogging: true })

      function forward(request: FastifyRequest, reply: FastifyReply, o: DecisionOutcome, jsonBody: boolean): FastifyReply {
        if (blocks(o)) return reply.code(403).send(deniedBody(o))
        request.aegisOutcome = o
        const rawUrl = request.raw.url ?? request.url
        const q = rawUrl.indexOf('?')
        const path = (q < 0 ? rawUrl : rawUrl.slice(0, q)).slice(prefix.length)
        const target = upstreamPath + (path === '' || path.startsWith('/') ? path : '/' + path) + (q < 0 ? '' : rawUrl.slice(q))
        const sanitize = o.enforced && o.obligations.length > 0
        // `redact:/result/…` obligations are applied only by MCP mode: refused here rather than forwarded unredacted.
        if (o.enforced && o.obligations.some((ob) => ob.path.startsWith('/result/'))) {
          return reply.code(403).send({ ...deniedBody(o), error_description: 'result redactions can only be applied in MCP mode' })
        }
        if (sanitize && !jsonBody) {
          return reply.code(403).send({ ...deniedBody(o), error_description: 'sanitize obligations can only be applied to JSON bodies' })
        }
        const opts: NonNullable<Parameters<FastifyReply['from']>[1]> = { rewriteRequestHeaders: rewriteHeaders as NonNullable<NonNullable<Parameters<FastifyReply['from']>[1]>['rewriteRequestHeaders']> }
        if (jsonBody && !BODYLESS.has(request.method)) {
          opts.body = JSON.stringify(sanitize ? o.params : request.body)
          opts.contentType = 'application/json'
        }
        return reply.from(target === '' ? '/' : target, opts)
      }

      function handler(request: FastifyRequest, reply: FastifyReply): FastifyReply | Promise<FastifyReply> {
        let result: DecisionOutcome | Promise<DecisionOutcome>
        const jsonBody = isPlainObject(request.body) && !Buffer.isBuffer(request.body)
        try {
          const rawUrl = request.raw.url ?? request.url
          const q = rawUrl.indexOf('?')
          if (DOT_SEGMENT.test(q < 0 ? rawUrl : rawUrl.slice(0, q))) throw new AegisError('invalid_request', 'dot segments are not allowed in proxied paths')
          const token = bearerOf(request)
          const tool = route.tool ?? header(request, 'aegis-tool')
          if (token !== undefined && (tool === undefined || !TOOL_NAME.test(tool))) {
            throw new AegisError('invalid_request', 'this route names no tool: send the Aegis-Tool header')
          }
          const resource = header(request, 'aegis-resource') ?? null
          if (resource !== null && resource.length > MAX_RESOURCE_LENGTH) throw new AegisError('invalid_request', 'Aegis-Resource too long')
          const params = jsonBody ? request.body as Record<string, unknown> : isPlainObject(request.query) ? request.query : EMPTY_PARAMS
          const req: DecisionRequest = {
            token,
            tool: tool ?? 'unknown',
            params,
            resource,
            // Not from a client header: a caller must not be able to switch enforcement off.
            dryRun: false,
            override: header(request, 'aegis-override') ?? null,
            clientAddress: request.ip,
            mode: 'proxy',
            sender: request,
          }
          result = pipeline.decide(req)
        } catch (err) {
          return sendFailure(reply, request, err)
        }
        if (result instanceof Promise) return result.then((o) => forward(request, reply, o, jsonBody), (err: unknown) => sendFailure(reply, request, err))
        return forward(request, reply, result, jsonBody)
      }

      scope.route({ method: METHODS, url: prefix === '' ? '/' : prefix, handler })
      scope.route({ method: METHODS, url: `${prefix}/*`, handler })
    })
  }
}
