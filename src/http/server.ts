import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import formbody from '@fastify/formbody'
import type { Bindings, ChildLoggerOptions, Logger } from 'pino'
import { InvalidRequest } from '../errors.js'
import { jsonDepth } from '../lib/json-limits.js'
import { installErrorHandler } from './error-handler.js'

export interface ServerOptions {
  logger: Logger
  bodyLimit: number
  jsonDepth: number
  /** Extra fastify options (https for TLS listeners). */
  fastify?: Partial<FastifyServerOptions>
}

type LogArgs = Parameters<Logger['info']>

/**
 * The request logger fastify makes for every request, created only when
 * something is logged: a pino child costs a few µs (its bindings pass through
 * the redaction wildcards), and with request logging off nearly every request
 * logs nothing, which is most of what the token endpoint's hot path spent on
 * logging.
 */
class LazyRequestLogger {
  private made: Logger | undefined
  constructor(
    private readonly parent: Logger,
    private readonly bindings: Bindings,
    private readonly opts: ChildLoggerOptions,
  ) {}
  private get real(): Logger {
    return (this.made ??= this.parent.child(this.bindings, this.opts))
  }
  get level(): string {
    return this.real.level
  }
  set level(v: string) {
    this.real.level = v
  }
  fatal(...a: LogArgs): void {
    this.real.fatal(...a)
  }
  error(...a: LogArgs): void {
    this.real.error(...a)
  }
  warn(...a: LogArgs): void {
    this.real.warn(...a)
  }
  info(...a: LogArgs): void {
    this.real.info(...a)
  }
  debug(...a: LogArgs): void {
    this.real.debug(...a)
  }
  trace(...a: LogArgs): void {
    this.real.trace(...a)
  }
  silent(...a: LogArgs): void {
    this.real.silent(...a)
  }
  isLevelEnabled(level: string): boolean {
    return this.real.isLevelEnabled(level)
  }
  child(bindings: Bindings, opts?: ChildLoggerOptions): Logger {
    return this.real.child(bindings, opts)
  }
}

/**
 * Options of fastify's schema validator (ajv) for every role: route schemas
 * mean exactly what they say. fastify's defaults would coerce types ("5" for
 * an integer, 5 for a string), silently drop unknown fields where a schema
 * says `additionalProperties: false`, and fill in defaults.
 */
export const SCHEMA_VALIDATOR_OPTIONS = {
  coerceTypes: false,
  removeAdditional: false,
  useDefaults: false,
  // Patterns run as RegExps without the `u` flag, as hand-written checks do; lengths count code points (ajv 8 always does).
  unicodeRegExp: false,
  // `type: ["string", "null"]` is how a schema says "or null" (OpenAPI 3.1 spells it the same way).
  allowUnionTypes: true,
} as const

/**
 * A fastify instance with the plumbing every role shares: bounded bodies,
 * bounded JSON depth, form bodies (RFC 6749 requests), strict schema
 * validation, the root error handler. Not listening; only cli/ listens.
 */
export async function createServer(opts: ServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: opts.logger,
    bodyLimit: opts.bodyLimit,
    // Per-request access lines would double the log volume on the hot paths; errors are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: (logger, bindings, childOpts) =>
      new LazyRequestLogger(logger as unknown as Logger, bindings, childOpts as ChildLoggerOptions) as unknown as FastifyBaseLogger,
    return503OnClosing: true,
    forceCloseConnections: true,
    ajv: { customOptions: SCHEMA_VALIDATOR_OPTIONS },
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
      return done(new InvalidRequest('malformed JSON body'), undefined)
    }
    if (jsonDepth(parsed, opts.jsonDepth) > opts.jsonDepth) {
      return done(new InvalidRequest(`JSON nested deeper than ${opts.jsonDepth}`), undefined)
    }
    done(null, parsed)
  })
  await app.register(formbody, { bodyLimit: opts.bodyLimit })
  installErrorHandler(app)
  return app
}
