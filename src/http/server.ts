import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import formbody from '@fastify/formbody'
import type { Logger } from 'pino'
import { AegisError } from '../errors.js'
import { jsonDepth } from '../lib/json-limits.js'
import { installErrorHandler } from './error-handler.js'

export interface ServerOptions {
  logger: Logger
  bodyLimit: number
  jsonDepth: number
  /** Extra fastify options (https for TLS listeners). */
  fastify?: Partial<FastifyServerOptions>
}

/**
 * A fastify instance with the plumbing every role shares: bounded bodies,
 * bounded JSON depth, form bodies (RFC 6749 requests), the root error
 * handler. Not listening; only cli/ listens.
 */
export async function createServer(opts: ServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: opts.logger,
    bodyLimit: opts.bodyLimit,
    // Per-request access lines would double the log volume on the hot paths; errors are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    forceCloseConnections: true,
    ...opts.fastify,
  }) as unknown as FastifyInstance
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8')
    if (text.trim() === '') return done(null, undefined)
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      return done(new AegisError('invalid_request', 'malformed JSON body'), undefined)
    }
    if (jsonDepth(parsed, opts.jsonDepth) > opts.jsonDepth) {
      return done(new AegisError('invalid_request', `JSON nested deeper than ${opts.jsonDepth}`), undefined)
    }
    done(null, parsed)
  })
  await app.register(formbody, { bodyLimit: opts.bodyLimit })
  installErrorHandler(app)
  return app
}
