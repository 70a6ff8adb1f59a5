import { pino, type Logger } from 'pino'

export type { Logger }

/**
 * The process logger. Authorization material is redacted at the source so
 * that no token, secret or private key reaches a log line even by accident.
 */
export function createLogger(level: string, name = 'aegis'): Logger {
  return pino({
    name,
    level,
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
  })
}

/** A logger that writes nothing (tests, benches). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
