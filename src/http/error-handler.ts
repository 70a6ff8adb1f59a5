import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AegisError, type ErrorCode, InvalidRequest, NotFound } from '../errors.js'

/** Maps fastify's own errors (body parsing, limits, validation) to Aegis codes. */
function fromFastify(err: FastifyError): AegisError | null {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AegisError('payload_too_large', 'request body too large')
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new AegisError('unsupported_media_type', 'unsupported content type')
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new InvalidRequest('malformed JSON body')
    default:
      break
  }
  if (err.validation) return new InvalidRequest(err.message)
  if (typeof err.statusCode === 'number' && err.statusCode === 429) {
    return new AegisError('rate_limited', 'too many requests')
  }
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return new InvalidRequest(err.message)
  }
  return null
}

/** RFC 6750 §3 header for bearer-token errors. */
export function wwwAuthenticate(code: ErrorCode, description: string, extra?: Record<string, string>): string {
  const params = [`error="${code}"`, `error_description="${description.replace(/["\\]/g, '')}"`]
  for (const [k, v] of Object.entries(extra ?? {})) params.push(`${k}="${v}"`)
  return `Bearer ${params.join(', ')}`
}

/** `Retry-After` (seconds) of a 503 that names none: an outage, which clients and proxies retry (RFC 9110 §10.2.3). */
export const DEFAULT_RETRY_AFTER_SECONDS = 1

/** Sends an AegisError as `{"error", "error_description"}` with its status and headers. */
export function sendError(reply: FastifyReply, err: AegisError, request: FastifyRequest): FastifyReply {
  for (const [k, v] of Object.entries(err.headers)) reply.header(k, v)
  if (err.code === 'temporarily_unavailable' && !reply.hasHeader('retry-after')) reply.header('retry-after', String(DEFAULT_RETRY_AFTER_SECONDS))
  if (!err.expose) {
    return reply
      .code(err.status)
      .send({ error: err.code === 'temporarily_unavailable' ? err.code : 'server_error', error_description: `internal error (request ${request.id})` })
  }
  if ((err.code === 'invalid_token' || err.code === 'insufficient_scope') && !reply.hasHeader('www-authenticate')) {
    reply.header('www-authenticate', wwwAuthenticate(err.code, err.message))
  }
  return reply.code(err.status).send({ error: err.code, error_description: err.message })
}

/** One root error handler: anything thrown becomes an OAuth-style JSON error. */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | AegisError | Error, request, reply) => {
    let err: AegisError
    if (error instanceof AegisError) err = error
    else err = fromFastify(error as FastifyError) ?? new AegisError('server_error', 'internal error', { cause: error })
    if (err.status >= 500) request.log.error({ err: error }, 'request failed')
    else request.log.info({ code: err.code, reason: err.message }, 'request refused')
    return sendError(reply, err, request)
  })
  app.setNotFoundHandler((request, reply) => sendError(reply, new NotFound(`no route for ${request.method} ${request.url.split('?')[0]}`), request))
}
