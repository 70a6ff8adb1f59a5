import { context } from '@opentelemetry/api'
import type { FastifyInstance } from 'fastify'
import { extractContext } from './tracing.js'

/**
 * Runs every route handler of `app` inside the W3C trace context of its
 * request (`traceparent`/`tracestate`), so spans started anywhere below
 * (`context.active()`) continue the caller's trace. A preHandler rather than
 * onRequest: the body is parsed from socket events, outside any request
 * context, and the handler is called synchronously from the last preHandler.
 * Costs nothing measurable without a trace header.
 */
export function continueTraceContext(app: FastifyInstance): void {
  app.addHook('preHandler', (request, _reply, done) => {
    const h = request.headers
    if (h.traceparent === undefined) return done()
    context.with(extractContext(h), done)
  })
}
