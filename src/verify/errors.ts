/**
 * Why a token was refused. Machine-readable, for metrics and logs; the
 * client only ever sees `invalid_token` and the fixed `message`.
 */
export type VerifyFailureReason =
  | 'malformed'
  | 'too_large'
  | 'algorithm'
  | 'type'
  | 'header'
  | 'keys_not_loaded'
  | 'unknown_kid'
  | 'signature'
  | 'issuer'
  | 'audience'
  | 'expired'
  | 'not_yet_valid'
  | 'claims'

/**
 * A token failed verification. `code` is always `invalid_token` (RFC 6750
 * §3.1, HTTP 401); `message` is a fixed, safe text that never echoes the
 * token or any of its header or claim values.
 *
 * Deliberately not an `AegisError`: `aegis/verify` imports no server code.
 * Callers inside Aegis map it with `new AegisError('invalid_token', err.message)`.
 */
export class VerifyError extends Error {
  /** OAuth error code (RFC 6750 §3.1). */
  readonly code = 'invalid_token' as const
  /** HTTP status a resource server answers with. */
  readonly status = 401 as const
  /** Which check refused the token. */
  readonly reason: VerifyFailureReason
  /**
   * The token's (unverified, length-bounded) `kid` when the failure concerns
   * keys (`unknown_kid`, `keys_not_loaded`); lets `verify` wait for a refetch.
   * Attacker-controlled: never put it in a response.
   */
  readonly kid: string | undefined

  constructor(reason: VerifyFailureReason, message: string, kid?: string) {
    super(message)
    this.name = 'VerifyError'
    this.reason = reason
    this.kid = kid
  }
}
