import type { AegisError } from '../../../errors.js'
import type { PresentedCertificate } from '../../../lib/x509.js'
import type { Agent, BootstrapCredential, Tenant, TokenEndpointAuthMethod } from '../../../store/types.js'

/** What a request presented to authenticate, before anything was checked. */
export interface ClientClaim {
  method: TokenEndpointAuthMethod
  /** Claimed client id (bounded, not yet trusted). */
  clientId: string
  /** client_secret_basic / client_secret_post. */
  secret?: string
  /** private_key_jwt: the `client_assertion` (RFC 7523 §2.2). */
  assertion?: string
  /** tls_client_auth: the certificate presented (TLS handshake or trusted proxy). */
  certificate?: PresentedCertificate
}

/**
 * Why authentication is needed: issuing (every check), or revoking /
 * introspecting one's own tokens (a used-up single-use or recently expired
 * bootstrap credential may still revoke what it obtained).
 */
export type AuthPurpose = 'token' | 'revoke' | 'introspect'

/** A client whose credentials were verified. */
export interface AuthenticatedClient {
  method: TokenEndpointAuthMethod
  clientId: string
  tenant: Tenant
  agent: Agent
  credential: BootstrapCredential | null
  /**
   * Completes authentication once the request is otherwise valid: consumes a
   * single-use credential atomically. Rejects with ClientAuthFailure when it
   * lost the race. Only called on the issuance path.
   */
  commit(): Promise<void>
}

/** One authentication method at the token endpoint (RFC 6749 §2.3, RFC 7523, RFC 8705). */
export interface ClientAuthenticator {
  readonly methods: readonly TokenEndpointAuthMethod[]
  authenticate(claim: ClientClaim, purpose: AuthPurpose): Promise<AuthenticatedClient>
}

/** Internal reasons, recorded in `auth.failed` and metrics, never sent to the client. */
export type AuthFailureReason =
  | 'malformed'
  | 'missing'
  | 'unknown_client'
  | 'bad_secret'
  | 'expired'
  | 'used'
  | 'agent_missing'
  | 'tenant_missing'
  | 'attestation_required'
  | 'method_not_allowed'
  | 'bad_certificate'
  /** The client certificate (or a CA above it) is listed by a configured CRL. */
  | 'certificate_revoked'
  | 'bad_assertion'
  | 'replayed'
  /** An agent, client or tenant revocation holds (docs/reference.md "Revocation"). */
  | 'revoked'

export type { AegisError }
