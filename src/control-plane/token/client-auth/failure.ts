import { AegisError } from '../../../errors.js'
import type { AuthFailureReason } from './types.js'

/** A failed client authentication: always the flat `invalid_client` message; `reason` is for the audit log only. */
export class ClientAuthFailure extends AegisError {
  constructor(
    readonly reason: AuthFailureReason,
    readonly tenant: string | null = null,
  ) {
    super('invalid_client', 'client authentication failed')
  }
}
