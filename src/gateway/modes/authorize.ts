import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { type AegisError, InvalidRequest } from '../../errors.js'
import type { DecisionOutcome, DecisionPipeline, DecisionRequest } from '../pipeline/index.js'
import { bearerOf, header, isPlainObject, MAX_RESOURCE_LENGTH, sendFailure, TOOL_NAME } from './common.js'

const EMPTY_PARAMS: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>

function bad(message: string): AegisError {
  return new InvalidRequest(message)
}

/**
 * Validates `{"action": {"tool", "params"}, "resource"}` (docs/reference.md
 * `/v1/authorize`). Unknown members are refused so that a typo never
 * silently changes what was decided.
 */
export function parseAuthorizeBody(body: unknown): { tool: string; params: Record<string, unknown>; resource: string | null } {
  if (!isPlainObject(body)) throw bad('body must be a JSON object {"action": {"tool", "params"}, "resource"}')
  for (const k in body) if (k !== 'action' && k !== 'resource') throw bad(`unknown member "${k.slice(0, 64)}"`)
  const action = body.action
  if (!isPlainObject(action)) throw bad('action must be an object {"tool", "params"}')
  for (const k in action) if (k !== 'tool' && k !== 'params') throw bad(`unknown member "action.${k.slice(0, 64)}"`)
  const tool = action.tool
  if (typeof tool !== 'string' || !TOOL_NAME.test(tool)) throw bad('action.tool must be a tool name (letters, digits, . _ : / -; at most 256)')
  let params = EMPTY_PARAMS
  if (action.params !== undefined && action.params !== null) {
    if (!isPlainObject(action.params)) throw bad('action.params must be a JSON object')
    params = action.params
  }
  const resource = body.resource
  if (resource !== undefined && resource !== null && (typeof resource !== 'string' || resource.length > MAX_RESOURCE_LENGTH)) {
    throw bad(`resource must be a string of at most ${MAX_RESOURCE_LENGTH} characters`)
  }
  return { tool, params, resource: typeof resource === 'string' ? resource : null }
}

/** The wire body of a decision (docs/reference.md `/v1/authorize`). */
export function decisionBody(o: DecisionOutcome): Record<string, unknown> {
  const body: Record<string, unknown> = {
    decision: o.decision,
    reasons: o.reasons,
    policy_version: o.policyVersion,
    obligations: o.obligations,
    params: o.params,
    enforced: o.enforced,
  }
  if (o.approval !== null) body.approval = o.approval
  return body
}

/**
 * `POST /v1/authorize`: 200 with the decision; 401 + `WWW-Authenticate:
 * Bearer error="invalid_token"` for a token that fails verification, is
 * revoked or replayed; 400 `invalid_request` for a bad body; 503 while the
 * gateway cannot decide (feed not loaded, manifest unavailable).
 */
export function registerAuthorize(app: FastifyInstance, pipeline: DecisionPipeline): void {
  function send(reply: FastifyReply, outcome: DecisionOutcome): FastifyReply {
    return reply.code(200).header('cache-control', 'no-store').send(decisionBody(outcome))
  }
  app.post('/v1/authorize', function authorize(request: FastifyRequest, reply: FastifyReply) {
    let result: DecisionOutcome | Promise<DecisionOutcome>
    try {
      const token = bearerOf(request)
      // No token at all is a 401 whatever the body; otherwise the body is checked before the (costlier) verification.
      const call = token === undefined ? { tool: 'unknown', params: EMPTY_PARAMS, resource: null } : parseAuthorizeBody(request.body)
      const req: DecisionRequest = {
        token,
        tool: call.tool,
        params: call.params,
        resource: call.resource,
        dryRun: header(request, 'aegis-dry-run') === '1',
        override: header(request, 'aegis-override') ?? null,
        clientAddress: request.ip,
        sender: request,
        mode: 'authorize',
      }
      result = pipeline.decide(req)
    } catch (err) {
      return sendFailure(reply, request, err)
    }
    if (result instanceof Promise) {
      return result.then(
        (o) => send(reply, o),
        (err: unknown) => sendFailure(reply, request, err),
      )
    }
    return send(reply, result)
  })
}
