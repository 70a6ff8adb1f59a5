import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { InvalidRequest } from '../../errors.js'
import type { DecisionOutcome, DecisionPipeline, DecisionRequest } from '../pipeline/index.js'
import { bearerOf, blocks, deniedBody, header, isPlainObject, MAX_RESOURCE_LENGTH, sendFailure, TOOL_NAME } from './common.js'

const EMPTY_PARAMS: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']
export const EXT_AUTHZ_PREFIX = '/v1/ext-authz'
/**
 * Path segment that ends the tool: what follows is the original request path
 * a proxy appended (Envoy's `http_service.path_prefix` always appends it). No
 * tool name starts with `-`, so `/v1/ext-authz/-/…` names no tool.
 */
const TAIL_MARKER = '-'

/** Which client-settable headers an operator vouches for (config `gateway.extAuthz`). */
export interface ExtAuthzOptions {
  /** `Aegis-Tool` may name the tool when the path names none (the proxy sets it and strips the client's copy). */
  toolHeader: boolean
  /** `Aegis-Resource` is believed as the decision's resource (the proxy sets it and strips the client's copy). */
  resourceHeader: boolean
}

const NO_TRUSTED_HEADERS: ExtAuthzOptions = Object.freeze({ toolHeader: false, resourceHeader: false })

/**
 * ext_authz (Envoy HTTP service) and nginx `auth_request` mode
 * (docs/reference.md "Gateway"): `ANY /v1/ext-authz/<tool>`.
 *
 * The tool decided is the one the path names: the proxy's configuration
 * writes the path, while nginx passes every header of the caller to the
 * authorization subrequest. So an `Aegis-Tool` header never changes the
 * tool: one naming another tool than the path is refused with 403
 * (`tool mismatch`), one naming the same tool is accepted. A path segment
 * `-` ends the tool (`/v1/ext-authz/crm.read/-/tools/crm/x`): what follows
 * is the original request path a proxy appended, ignored. Only with
 * `gateway.extAuthz.toolHeader` may a request whose path names no tool
 * (`/v1/ext-authz`, `/v1/ext-authz/-/…`) take it from `Aegis-Tool`, for
 * proxies (Envoy) that set that header themselves and drop the caller's.
 * Likewise the resource is null unless `gateway.extAuthz.resourceHeader`
 * makes `Aegis-Resource` believed; without it, a request carrying that
 * header is refused (400) rather than decided on another resource than its
 * sender meant. The call's parameters come from a JSON body when the proxy
 * forwards one (nginx sends none).
 *
 * Answers: 200 when allowed, with `x-aegis-agent`, `x-aegis-tenant`,
 * `x-aegis-decision`, `x-aegis-enforced` and `x-aegis-policy-version`;
 * 401 for a bad, revoked or replayed token; 403 for deny and
 * approval_needed, and also for `sanitize`, because an authorization
 * subrequest cannot rewrite the body it would have to sanitize (use proxy
 * mode for such tools); 403 for a tool mismatch (before the token is
 * looked at: no decision is made on a request that names two tools).
 * `Aegis-Dry-Run` is ignored here: a client header must never switch
 * enforcement off; shadow mode is the operator's switch.
 */
export function registerExtAuthz(app: FastifyInstance, pipeline: DecisionPipeline, options: ExtAuthzOptions = NO_TRUSTED_HEADERS): void {
  function send(reply: FastifyReply, o: DecisionOutcome): FastifyReply {
    const f = o.token.facts
    reply
      .header('x-aegis-agent', f.agentId)
      .header('x-aegis-tenant', f.tenant)
      .header('x-aegis-decision', o.decision)
      .header('x-aegis-enforced', o.enforced ? 'true' : 'false')
      .header('x-aegis-policy-version', o.policyVersion)
      .header('cache-control', 'no-store')
    if (blocks(o) || (o.enforced && o.decision === 'sanitize')) {
      const body = deniedBody(o)
      if (o.decision === 'sanitize') body.error_description = 'sanitize obligations cannot be applied in ext_authz mode; route this tool through proxy mode'
      return reply.code(403).send(body)
    }
    return reply.code(200).send()
  }

  function handler(request: FastifyRequest, reply: FastifyReply): FastifyReply | Promise<FastifyReply> {
    let result: DecisionOutcome | Promise<DecisionOutcome>
    try {
      const token = bearerOf(request)
      const pathTool = toolOfPath(request.url)
      const sent = request.headers['aegis-tool']
      let tool: string | undefined
      if (pathTool !== undefined) {
        // Repeated headers arrive as an array (or joined): never equal to the path's tool, so refused too.
        if (sent !== undefined && sent !== pathTool) {
          request.log.warn({ path_tool: pathTool }, 'ext-authz: Aegis-Tool header names another tool than the path')
          return reply
            .code(403)
            .header('cache-control', 'no-store')
            .send({
              error: 'access_denied',
              error_description: 'tool mismatch: the Aegis-Tool header names another tool than the path /v1/ext-authz/<tool>',
              decision: 'deny',
              reasons: ['tool mismatch'],
            })
        }
        tool = pathTool
      } else if (options.toolHeader) {
        tool = header(request, 'aegis-tool')
      }
      if (token !== undefined && (tool === undefined || !TOOL_NAME.test(tool))) {
        throw new InvalidRequest(
          options.toolHeader ? 'name the tool in the path /v1/ext-authz/<tool> or in the Aegis-Tool header' : 'name the tool in the path /v1/ext-authz/<tool>',
        )
      }
      let resource: string | null = null
      if (request.headers['aegis-resource'] !== undefined) {
        if (!options.resourceHeader)
          throw new InvalidRequest('Aegis-Resource is not accepted here: the gateway is not configured to believe it (gateway.extAuthz.resourceHeader)')
        resource = header(request, 'aegis-resource') ?? null
        if (resource === null) throw new InvalidRequest('Aegis-Resource must be sent once')
        if (resource.length > MAX_RESOURCE_LENGTH) throw new InvalidRequest('Aegis-Resource too long')
      }
      const req: DecisionRequest = {
        token,
        tool: tool ?? 'unknown',
        params: isPlainObject(request.body) ? request.body : EMPTY_PARAMS,
        resource,
        dryRun: false,
        override: header(request, 'aegis-override') ?? null,
        clientAddress: request.ip,
        sender: request,
        mode: 'ext_authz',
      }
      result = pipeline.decide(req)
    } catch (err) {
      return sendFailure(reply, request, err)
    }
    if (result instanceof Promise)
      return result.then(
        (o) => send(reply, o),
        (err: unknown) => sendFailure(reply, request, err),
      )
    return send(reply, result)
  }

  app.register(async (scope) => {
    // Bodies an authorization subrequest may carry but we do not read: accepted and ignored.
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, _body, done) => done(null, undefined))
    scope.route({ method: METHODS, url: EXT_AUTHZ_PREFIX, handler })
    scope.route({ method: METHODS, url: `${EXT_AUTHZ_PREFIX}/*`, handler })
  })
}

/**
 * The tool the raw request URL names after `/v1/ext-authz/`, up to a `-`
 * segment or the query, percent-decoded; undefined when it names none. A
 * name that cannot be decoded is returned raw, so it fails TOOL_NAME and the
 * request is refused rather than decided on some other tool.
 */
export function toolOfPath(url: string): string | undefined {
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  if (!path.startsWith(`${EXT_AUTHZ_PREFIX}/`)) return undefined
  const rest = path.slice(EXT_AUTHZ_PREFIX.length + 1)
  let raw: string
  if (rest === TAIL_MARKER || rest.startsWith(`${TAIL_MARKER}/`)) raw = ''
  else {
    const i = rest.indexOf(`/${TAIL_MARKER}/`)
    raw = i !== -1 ? rest.slice(0, i) : rest.endsWith(`/${TAIL_MARKER}`) ? rest.slice(0, -TAIL_MARKER.length - 1) : rest
  }
  if (raw === '') return undefined
  try {
    return decodeURIComponent(raw)
  } catch {
    return raw
  }
}
