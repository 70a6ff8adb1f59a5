/**
 * Errors the SDK throws. None of them ever carries a token, a client secret
 * or a response body verbatim: only OAuth error codes, HTTP statuses and the
 * server's (length-bounded) `error_description`.
 *
 * Deliberately not `AegisError` from the server: `aegis/sdk` imports no
 * server code.
 */

/** Base class of every error `aegis/sdk` throws. */
export class AegisSdkError extends Error {
  /**
   * Machine-readable code: an OAuth error code (RFC 6749 §5.2, RFC 6750 §3.1)
   * when the server sent one, otherwise one of the SDK's own
   * (`network_error`, `invalid_response`, `closed`, `discovery_failed`,
   * `approval_url_untrusted`).
   */
  readonly code: string
  /** HTTP status of the response that caused it, when there was one. */
  readonly status: number | undefined

  constructor(code: string, message: string, options?: ErrorOptions & { status?: number }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
    this.status = options?.status
  }
}

/**
 * The authorization server refused the credentials or the request
 * (HTTP 400/401 from the token endpoint, RFC 6749 §5.2). Never retried:
 * retrying a wrong secret only locks the client out faster.
 * `code` is the server's `error` (`invalid_client`, `invalid_grant`,
 * `invalid_scope`, `invalid_target`, `unauthorized_client`, …).
 */
export class AegisAuthError extends AegisSdkError {
  /** The server's `error_description`, bounded to 500 characters. */
  readonly description: string | undefined

  constructor(code: string, description: string | undefined, status: number) {
    super(code, description ? `${code}: ${description}` : code, { status })
    this.description = description
  }
}

/**
 * The server could not be reached or kept answering 429/5xx after every
 * retry. `code` is `network_error`, `temporarily_unavailable`,
 * `rate_limited` or `server_error`; the last underlying error is `cause`.
 */
export class AegisUnavailableError extends AegisSdkError {
  /** How long the server last asked to wait (`Retry-After`), in milliseconds. */
  readonly retryAfterMs: number | undefined

  constructor(code: string, message: string, options?: ErrorOptions & { status?: number; retryAfterMs?: number }) {
    super(code, message, options)
    this.retryAfterMs = options?.retryAfterMs
  }
}
