import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AegisError } from '../../errors.js'
import type { DecisionOutcome, DecisionPipeline, DecisionRequest } from '../pipeline/index.js'
import { bearerOf, blocks, deniedBody, header, isPlainObject, MAX_RESOURCE_LENGTH, sendFailure, TOOL_NAME } from './common.js'

const EMPTY_PARAMS: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']
export const EXT_AUTHZ_PREFIX = '/v1/ext-authz'

/**
 * ext_authz (Envoy HTTP service) and nginx `auth_request` mode
 * (DESIGN.md "Gateway"): `ANY /v1/ext-authz/<tool>`, the tool taken from
 * the `Aegis-Tool` header or else the path after the prefix; the call's
 * parameters from a JSON body when the proxy forwards one (nginx sends
 * none), the target from `Aegis-Resource`.
 *
 * Answers: 200 when allowed, with `x-aegis-agent`, `x-aegis-tenant`,
 * `x-aegis-decision`, `x-aegis-enforced` and `x-aegis-policy-version`;
 * 401 for a bad, revoked or replayed token; 403 for deny and
 * approval_needed, and also for `sanitize`, because an authorization
 * subrequest cannot rewrite the body it would have to sanitize (use proxy
 * mode for such tools). `Aegis-Dry-Run` is ignored here: a client header
 * must never switch enforcement off; shadow mode is the operator's switch.
 */
export function registerExtAuthz(app: FastifyInstance, pipeline: DecisionPipeline): void {
  function send(reply: FastifyReply, o: DecisionOutcome): FastifyReply {
    const f = o.token.facts
    reply.header('x-aegis-agent', f.agentId).header('x-aegis-tenant', f.tenant).header('x-aegis-decision', o.decision)
      .header('x-aegis-enforced', o.enforced ? 'true' : 'false').header('x-aegis-policy-version', o.policyVersion).header('cache-control', 'no-store')
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
      const tool = header(request, 'aegis-tool') ?? decodeTool((request.params as Record<string, string | undefined>)['*'])
      if (token !== undefined && (tool === undefined || !TOOL_NAME.test(tool))) {
        throw new AegisError('invalid_request', 'name the tool in the Aegis-Tool header or the path /v1/ext-authz/<tool>')
      }
      const resource = header(request, 'aegis-resource') ?? null
      if (resource !== null && resource.length > MAX_RESOURCE_LENGTH) throw new AegisError('invalid_request', 'Aegis-Resource too long')
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
    if (result instanceof Promise) return result.then((o) => send(reply, o), (err: unknown) => sendFailure(reply, request, err))
    return send(reply, result)
  }

  app.register(async (scope) => {
    // Bodies an authorization subrequest may carry but we do not read: accepted and ignored.
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, _body, done) => done(null, undefined))
    scope.route({ method: METHODS, url: EXT_AUTHZ_PREFIX, handler })
    scope.route({ method: METHODS, url: `${EXT_AUTHZ_PREFIX}/*`, handler })
  })
}

function decodeTool(raw: string | undefined): string | undefined {
  if (raw === undefined || raw === '') return undefined
  try {
    return decodeURIComponent(raw)
  } catch {
    return undefined
  }
}
