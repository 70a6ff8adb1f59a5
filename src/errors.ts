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

export class AegisError extends Error {
  readonly code: ErrorCode
  /** Extra response headers (e.g. `Retry-After`, `DPoP-Nonce`). */
  readonly headers: Record<string, string>
  /** `message` goes to the client; put internal detail in `cause`. */
  constructor(code: ErrorCode, message: string, options?: ErrorOptions & { headers?: Record<string, string> }) {
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

export class InvalidRequest extends AegisError {
  constructor(message: string, options?: ErrorOptions) { super('invalid_request', message, options) }
}
export class InvalidClient extends AegisError {
  /** Authentication failures always carry one flat message, never which part was wrong. */
  constructor(options?: ErrorOptions) { super('invalid_client', 'client authentication failed', options) }
}
export class InvalidToken extends AegisError {
  constructor(message: string, options?: ErrorOptions) { super('invalid_token', message, options) }
}
export class NotFound extends AegisError {
  constructor(message: string, options?: ErrorOptions) { super('not_found', message, options) }
}
export class Conflict extends AegisError {
  constructor(message: string, options?: ErrorOptions) { super('conflict', message, options) }
}
export class Forbidden extends AegisError {
  constructor(message: string, options?: ErrorOptions) { super('forbidden', message, options) }
}
export class Unavailable extends AegisError {
  constructor(message: string, options?: ErrorOptions) { super('temporarily_unavailable', message, options) }
}
