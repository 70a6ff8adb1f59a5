/**
 * One error type for everything Aegis answers on the wire. `code` is an
 * OAuth-style error code (RFC 6749 §5.2, RFC 6750 §3.1, RFC 7009, RFC 7662)
 * or one of the admin API's codes; `message` is what the client sees.
 */
const STATUS = {
  invalid_request: 400,
  invalid_grant: 400,
  invalid_scope: 400,
  invalid_target: 400,
  unsupported_grant_type: 400,
  unsupported_token_type: 400,
  invalid_dpop_proof: 400,
  use_dpop_nonce: 400,
  invalid_client: 401,
  invalid_token: 401,
  unauthorized: 401,
  unauthorized_client: 400,
  insufficient_scope: 403,
  access_denied: 403,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  server_error: 500,
  temporarily_unavailable: 503,
} as const satisfies Record<string, number>

/** Every error code Aegis can answer with; the README's error table lists each. */
export type ErrorCode = keyof typeof STATUS

/** All codes, for documentation checks. */
export const ERROR_CODES = Object.keys(STATUS) as ErrorCode[]

/** Options of every Aegis error: a `cause` for the log, extra response headers for the client. */
export type AegisErrorOptions = ErrorOptions & { headers?: Record<string, string> }

/**
 * An error answered on the wire. Codes that have a subclass below
 * (`invalid_request`, `not_found`, `conflict`, `temporarily_unavailable`)
 * are built with that subclass and no other way, so `instanceof NotFound`
 * and `code === 'not_found'` always agree; every other code is built here.
 */
export class AegisError extends Error {
  readonly code: ErrorCode
  /** Extra response headers (e.g. `Retry-After`, `DPoP-Nonce`). */
  readonly headers: Record<string, string>
  /** `message` goes to the client; put internal detail in `cause`. */
  constructor(code: ErrorCode, message: string, options?: AegisErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.code = code
    this.headers = options?.headers ?? {}
  }
  get status(): number {
    return STATUS[this.code]
  }
  /** 5xx errors never expose their message; the client gets `server_error` and a request id. */
  get expose(): boolean {
    return this.status < 500 || this.code === 'temporarily_unavailable'
  }
}

/** HTTP status for a code. */
export function statusOf(code: ErrorCode): number {
  return STATUS[code]
}

/** `invalid_request` (400). */
export class InvalidRequest extends AegisError {
  constructor(message: string, options?: AegisErrorOptions) {
    super('invalid_request', message, options)
  }
}
/** `not_found` (404). */
export class NotFound extends AegisError {
  constructor(message: string, options?: AegisErrorOptions) {
    super('not_found', message, options)
  }
}
/** `conflict` (409). */
export class Conflict extends AegisError {
  constructor(message: string, options?: AegisErrorOptions) {
    super('conflict', message, options)
  }
}
/** `temporarily_unavailable` (503; its message is shown, unlike other 5xx). */
export class Unavailable extends AegisError {
  constructor(message: string, options?: AegisErrorOptions) {
    super('temporarily_unavailable', message, options)
  }
}

const SUBCLASSED = {
  invalid_request: InvalidRequest,
  not_found: NotFound,
  conflict: Conflict,
  temporarily_unavailable: Unavailable,
} as const satisfies Partial<Record<ErrorCode, new (message: string, options?: AegisErrorOptions) => AegisError>>

/**
 * The error for a code known only at run time (a parameter's own code, an
 * error re-raised with other headers): its subclass when the code has one,
 * so `instanceof` and `code` still agree.
 */
export function errorFor(code: ErrorCode, message: string, options?: AegisErrorOptions): AegisError {
  const Subclass = (SUBCLASSED as Partial<Record<ErrorCode, new (message: string, options?: AegisErrorOptions) => AegisError>>)[code]
  return Subclass ? new Subclass(message, options) : new AegisError(code, message, options)
}
