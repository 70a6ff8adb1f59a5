import { AsyncLocalStorage } from 'node:async_hooks'
import { context, trace, type Context, type Span } from '@opentelemetry/api'
import type { FastifyInstance } from 'fastify'
import { extractContext } from './tracing.js'

/** The trace context of one request, updated when a span (a decision) should parent what follows (the proxied call). */
interface TraceScope {
  ctx: Context
}

const scopes = new AsyncLocalStorage<TraceScope>()

/**
 * Runs every route handler of `app` inside the W3C trace context of its
 * request (`traceparent`/`tracestate`), so spans started anywhere below
 * (`context.active()`) continue the caller's trace. A preHandler rather than
 * onRequest: the body is parsed from socket events, outside any request
 * context, and the handler is called synchronously from the last preHandler.
 * Requests without `traceparent` skip it (nothing to continue).
 */
export function continueTraceContext(app: FastifyInstance): void {
  app.addHook('preHandler', (request, _reply, done) => {
    const h = request.headers
    if (h.traceparent === undefined) return done()
    const ctx = extractContext(h)
    scopes.run({ ctx }, () => context.with(ctx, done))
  })
}

/** Makes `span` the parent of what this request does next (its outgoing trace headers). */
export function adoptSpan(span: Span): void {
  const s = scopes.getStore()
  if (s !== undefined) s.ctx = trace.setSpan(s.ctx, span)
}

/** The context outgoing calls of this request should carry: the last adopted span, else the incoming one. */
export function outgoingContext(): Context {
  return scopes.getStore()?.ctx ?? context.active()
}
