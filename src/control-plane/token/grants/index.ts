/**
 * The grant types this token endpoint serves, by `grant_type`. Token
 * exchange (RFC 8693) and refresh tokens plug in here as further handlers.
 */
import { clientCredentialsGrant } from './client-credentials.js'
import { tokenExchangeGrant } from './token-exchange.js'
import type { GrantHandler } from './types.js'

export type { GrantContext, GrantHandler } from './types.js'
export { clientCredentialsGrant } from './client-credentials.js'
export { tokenExchangeGrant, TOKEN_EXCHANGE_GRANT } from './token-exchange.js'

/** Handlers by grant_type. */
export function defaultGrants(): Map<string, GrantHandler> {
  return new Map<string, GrantHandler>([
    [clientCredentialsGrant.grantType, clientCredentialsGrant],
    [tokenExchangeGrant.grantType, tokenExchangeGrant],
  ])
}
