import type { TokenView } from './token-view.js'
import { invalidToken } from './verify-token.js'

/**
 * Step 3 (DESIGN.md "Gateway"): sender constraint. mTLS (RFC 8705) and DPoP
 * (RFC 9449) proofs are not checked by the gateway yet, so a token bound to
 * a key (`cnf`) is refused rather than accepted unbound: a stolen
 * sender-constrained token must never work as a bearer token.
 */
export function checkSenderConstraint(view: TokenView): void {
  // TODO(#sender-constraint): verify x5t#S256 against the client certificate and jkt against a DPoP proof.
  if (view.constrained) throw invalidToken('sender-constrained tokens need mTLS/DPoP support')
}
