import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino'

export type { Logger }

/**
 * pino writes `msg` for the message string and also copies an object's own
 * `msg` member, so `log.info({ msg: 'why' }, 'refused')` would emit two `msg`
 * keys and a JSON parser keeps only one. Such a member is renamed `detail`.
 */
const hooks: LoggerOptions['hooks'] = {
  logMethod(args, method) {
    const [first, second] = args as unknown[]
    if (typeof first === 'object' && first !== null && !(first instanceof Error) && 'msg' in first && typeof second === 'string') {
      const { msg, ...rest } = first as Record<string, unknown>
      ;(args as unknown[])[0] = { ...rest, detail: msg }
    }
    return method.apply(this, args)
  },
}

/** Where a process's log lines go: stdout for the servers, stderr for commands whose stdout is their result. */
export type LogDestination = 'stdout' | 'stderr'

/**
 * The process logger. Authorization material is redacted at the source so
 * that no token, secret or private key reaches a log line even by accident.
 */
export function createLogger(level: string, name = 'aegis', destination: LogDestination | DestinationStream = 'stdout'): Logger {
  const options: LoggerOptions = {
    name,
    level,
    hooks,
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers["aegis-override"]',
        'req.headers.dpop',
        'req.headers.cookie',
        'headers.authorization',
        '*.client_secret',
        '*.access_token',
        '*.subject_token',
        '*.client_assertion',
        '*.token',
        '*.override_token',
        '*.privateKey',
        '*.kek',
      ],
      censor: '[redacted]',
    },
  }
  if (destination === 'stdout') return pino(options)
  // Synchronous on stderr: a short command's last lines are not lost at exit.
  return pino(options, destination === 'stderr' ? pino.destination({ dest: 2, sync: true }) : destination)
}

/** A logger that writes nothing (tests, benches). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
