import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { injectContext } from '../../observability/tracing.js'
import { outgoingContext } from '../../observability/request-context.js'
import type { IncomingHttpHeaders } from 'node:http'
import { AegisError, InvalidRequest } from '../../errors.js'
import type { RouteConfig } from '../../config/schema.js'
import type { Logger } from '../../observability/logger.js'
import type { DecisionOutcome, DecisionPipeline, DecisionRequest } from '../pipeline/index.js'
import { bearerOf, blocks, deniedBody, header, MAX_RESOURCE_LENGTH, sendFailure, TOOL_NAME } from './common.js'
import { readProxiedRequest, type ProxiedRequest } from './proxied-request.js'

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']
const BODYLESS = new Set(['GET', 'HEAD'])

declare module 'fastify' {
  interface FastifyRequest {
    aegisOutcome?: DecisionOutcome
  }
}

/**
 * Request headers an upstream framework may read as another method or URL
 * than the one decided (X-HTTP-Method-Override and kin, IIS/Symfony's
 * X-Original-URL and X-Rewrite-URL): never forwarded.
 */
const STEERING_HEADERS = new Set(['x-http-method-override', 'x-http-method', 'x-method-override', 'x-original-url', 'x-rewrite-url', 'x-original-method'])
/** The client's framing: reply-from has already set Content-Length and Content-Type for the body the gateway forwards. */
const CLIENT_FRAMING = new Set(['content-encoding', 'transfer-encoding'])

/**
 * Headers never forwarded upstream: the agent's credential and Aegis's own
 * request headers (`Aegis-*`), any `x-aegis-*` a client sent, which would
 * otherwise pose as the gateway's verdict, and headers that would make the
 * upstream run another method or URL than the one decided.
 */
function rewriteHeaders(request: { aegisOutcome?: DecisionOutcome }, headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {}
  for (const name in headers) {
    if (name === 'authorization' || name === 'proxy-authorization' || name === 'dpop' || name.startsWith('aegis-') || name.startsWith('x-aegis-')) continue
    if (STEERING_HEADERS.has(name) || CLIENT_FRAMING.has(name)) continue
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

/** The route's resource for a request: its `resource` template (`{path}` = the decoded path below the prefix), else the route path. */
function resourceOf(route: RouteConfig, prefix: string, path: string): string {
  const template = route.resource ?? (prefix === '' ? '/' : prefix)
  return template.replaceAll('{path}', path)
}

type ReplyFromOptions = NonNullable<Parameters<FastifyReply['from']>[1]>

/**
 * Reverse-proxy mode (docs/reference.md "Gateway"): each `mode: "proxy"` route of
 * `gateway.routes` forwards `<path>/**` to its upstream (the route prefix is
 * replaced by the upstream URL's path) after a decision on every request.
 *
 * The request is read once ({@link readProxiedRequest}) and that one reading
 * is both what the policy sees and what is forwarded: the method, the
 * decoded path and query (`context.http`), the JSON body as params (else the
 * query), or an opaque body's digest. The tool is the route's `tool`, else
 * the `Aegis-Tool` header (a header naming another tool than the route's is
 * refused); the resource comes from the route, never from a header. Allowed
 * calls are forwarded with the canonical path and query and the
 * re-serialized body (sanitized when the decision says so); an override
 * binds the method, path, query and opaque body digest. The Authorization
 * header is stripped; W3C `traceparent`/`tracestate` pass through.
 * `mode: "mcp"` routes are served by modes/mcp.
 */
export function registerProxyRoutes(
  app: FastifyInstance,
  pipeline: DecisionPipeline,
  routes: readonly RouteConfig[],
  _logger: Logger,
  limits: { jsonDepth: number },
): void {
  for (const route of routes) {
    // MCP routes are registered by modes/mcp.
    if (route.mode !== 'proxy') continue
    const upstream = new URL(route.upstream)
    const upstreamPath = upstream.pathname.replace(/\/+$/, '')
    const prefix = route.path.replace(/\/+$/, '')
    const opaque = route.opaque_body === true
    app.register(async (scope) => {
      // Every body arrives as bytes: readProxiedRequest alone decides how to read it.
      scope.removeAllContentTypeParsers()
      const asBytes = (_req: unknown, body: Buffer, done: (err: null, body: Buffer) => void): void => done(null, body)
      // application/json by name too: fastify finds an exact type without parsing the header, the common case.
      scope.addContentTypeParser('application/json', { parseAs: 'buffer' }, asBytes)
      scope.addContentTypeParser('*', { parseAs: 'buffer' }, asBytes)
      // Imported here: reply-from and undici are ~120 module files a gateway without proxy routes never needs at start-up.
      await scope.register(import('@fastify/reply-from'), { base: upstream.origin, disableRequestLogging: true })

      function forward(request: FastifyRequest, reply: FastifyReply, o: DecisionOutcome, call: ProxiedRequest): FastifyReply {
        if (blocks(o)) return reply.code(403).send(deniedBody(o))
        request.aegisOutcome = o
        const sanitize = o.enforced && o.obligations.length > 0
        // `redact:/result/…` obligations are applied only by MCP mode: refused here rather than forwarded unredacted.
        if (o.enforced && o.obligations.some((ob) => ob.path.startsWith('/result/'))) {
          return reply.code(403).send({ ...deniedBody(o), error_description: 'result redactions can only be applied in MCP mode' })
        }
        if (sanitize && call.http.body !== 'json') {
          return reply.code(403).send({ ...deniedBody(o), error_description: 'sanitize obligations can only be applied to JSON bodies' })
        }
        const target = upstreamPath + call.forwardPath
        const opts: ReplyFromOptions = {
          rewriteRequestHeaders: rewriteHeaders as ReplyFromOptions['rewriteRequestHeaders'],
          // Exactly the decided query, never the raw one (reply-from would append it when this is empty).
          queryString: () => call.forwardQuery,
        }
        if (call.http.body === 'json') {
          opts.body = JSON.stringify(sanitize ? o.params : call.params)
          opts.contentType = call.contentType!
        } else if (call.opaqueBody !== null) {
          opts.body = call.opaqueBody
          opts.contentType = call.contentType!
        } else if (!BODYLESS.has(request.method)) {
          opts.body = null
        }
        return reply.from(target === '' ? '/' : target, opts)
      }

      function handler(request: FastifyRequest, reply: FastifyReply): FastifyReply | Promise<FastifyReply> {
        let result: DecisionOutcome | Promise<DecisionOutcome>
        let call: ProxiedRequest
        try {
          call = readProxiedRequest({
            method: request.method,
            rawUrl: request.raw.url ?? request.url,
            prefix,
            headers: request.headers,
            body: Buffer.isBuffer(request.body) ? request.body : undefined,
            opaque,
            jsonDepth: limits.jsonDepth,
          })
          const token = bearerOf(request)
          const named = header(request, 'aegis-tool')
          if (route.tool !== undefined && named !== undefined && named !== route.tool) {
            throw new AegisError('access_denied', `tool mismatch: this route stands for ${route.tool}`)
          }
          const tool = route.tool ?? named
          if (token !== undefined && (tool === undefined || !TOOL_NAME.test(tool))) {
            throw new InvalidRequest('this route names no tool: send the Aegis-Tool header')
          }
          const resource = resourceOf(route, prefix, call.http.path)
          if (resource.length > MAX_RESOURCE_LENGTH) throw new InvalidRequest('resource too long')
          const req: DecisionRequest = {
            token,
            tool: tool ?? 'unknown',
            params: call.params,
            resource,
            // Not from a client header: a caller must not be able to switch enforcement off.
            dryRun: false,
            override: header(request, 'aegis-override') ?? null,
            clientAddress: request.ip,
            mode: 'proxy',
            sender: request,
            http: call.http,
          }
          if (call.paramsText !== undefined) req.paramsText = call.paramsText
          result = pipeline.decide(req)
        } catch (err) {
          return sendFailure(reply, request, err)
        }
        if (result instanceof Promise)
          return result.then(
            (o) => forward(request, reply, o, call),
            (err: unknown) => sendFailure(reply, request, err),
          )
        return forward(request, reply, result, call)
      }

      scope.route({ method: METHODS, url: prefix === '' ? '/' : prefix, handler })
      scope.route({ method: METHODS, url: `${prefix}/*`, handler })
    })
  }
}
