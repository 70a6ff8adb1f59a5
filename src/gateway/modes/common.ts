import type { FastifyReply, FastifyRequest } from 'fastify'
import { AegisError } from '../../errors.js'
import { sendError } from '../../http/error-handler.js'
import type { DecisionOutcome } from '../pipeline/index.js'

/** Longest resource accepted. */
export const MAX_RESOURCE_LENGTH = 2048
/** Tool names: dotted/slashed identifiers (`payments.transfer`, `kb/search`, `crm:read`). */
export const TOOL_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,255}$/

/**
 * The access token of `Authorization: Bearer <token>` (scheme case-insensitive,
 * RFC 6750 §2.1) or `Authorization: DPoP <token>` (RFC 9449 §7.1; the
 * pipeline's sender-constraint step then requires the proof), or undefined.
 */
export function bearerOf(request: FastifyRequest): string | undefined {
  const h = request.headers.authorization
  if (typeof h !== 'string' || h.length < 6) return undefined
  let rest: string
  const scheme = h.slice(0, 7)
  if (scheme === 'Bearer ' || scheme.toLowerCase() === 'bearer ') rest = h.slice(7)
  else if (h.slice(0, 5).toLowerCase() === 'dpop ') rest = h.slice(5)
  else return undefined
  const token = rest.trim()
  return token.length > 0 ? token : undefined
}

/** A single header value, or undefined (repeated headers count as absent-and-suspicious: undefined). */
export function header(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name]
  return typeof v === 'string' ? v : undefined
}

/** A plain JSON object (not an array, not null). */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** Sends a pipeline refusal (AegisError) or passes anything else to the root error handler. */
export function sendFailure(reply: FastifyReply, request: FastifyRequest, err: unknown): FastifyReply {
  if (err instanceof AegisError) {
    if (err.status >= 500) request.log.warn({ code: err.code, reason: err.message, err: err.cause }, 'decision unavailable')
    return sendError(reply, err, request)
  }
  throw err
}

/** True when a decision blocks the call. */
export function blocks(outcome: DecisionOutcome): boolean {
  return outcome.enforced && outcome.decision !== 'allow' && outcome.decision !== 'sanitize'
}

/** The 403 body for a blocked call. */
export function deniedBody(outcome: DecisionOutcome): Record<string, unknown> {
  const body: Record<string, unknown> = {
    error: 'access_denied',
    error_description: outcome.decision === 'approval_needed' ? 'the call needs approval' : 'the call is not allowed',
    decision: outcome.decision,
    reasons: outcome.reasons,
    policy_version: outcome.policyVersion,
  }
  if (outcome.approval) body.approval = outcome.approval
  return body
}
