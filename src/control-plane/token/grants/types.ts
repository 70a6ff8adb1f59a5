import type { FastifyRequest } from 'fastify'
import type { ControlPlaneDeps } from '../../deps.js'
import type { AuthenticatedClient } from '../client-auth/types.js'
import type { Directory } from '../directory.js'
import type { IssueRequest } from '../issue.js'
import type { FormBody } from '../params.js'

/** What a grant handler sees: the parsed form and the authenticated client (null only when the grant allows none). */
export interface GrantContext {
  deps: ControlPlaneDeps
  dir: Directory
  request: FastifyRequest
  body: FormBody
  client: AuthenticatedClient | null
  /**
   * The confirmation this request proved (client certificate `x5t#S256`, DPoP
   * `jkt`), or null: what a sender-constrained token in the body must match.
   */
  senderCnf?: Readonly<Record<string, string>> | null
}

/**
 * One grant type at the token endpoint. `prepare` validates the grant's
 * parameters and decides subject, scope and audience; it must not change
 * state (the endpoint commits the client authentication, e.g. consumes a
 * single-use secret, only after `prepare` succeeded).
 */
export interface GrantHandler {
  readonly grantType: string
  /** `required`: unauthenticated requests get invalid_client before prepare runs. */
  readonly clientAuth: 'required' | 'optional'
  prepare(ctx: GrantContext): IssueRequest | Promise<IssueRequest>
}
