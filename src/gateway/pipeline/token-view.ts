import type { TokenFacts } from '../../store/deny-list.js'
import type { PolicyDelegation, PolicyPrincipal } from '../../policy/types.js'
import type { VerifiedToken } from '../../verify/index.js'

/**
 * What the pipeline needs from a verified token, derived once per token and
 * kept beside the verifier's cached result, so a reused token costs no
 * re-derivation (the verifier returns the same frozen object for it).
 */
export interface TokenView {
  readonly verified: VerifiedToken
  readonly facts: TokenFacts
  /** Epoch seconds. */
  readonly exp: number
  readonly scopes: readonly string[]
  readonly policyVersion: string | null
  readonly capabilityHash: string
  /** Map key of the agent (tenant + agent id). */
  readonly agentKey: string
  /** A delegated token's chain (docs/delegation.md), null for an agent's own token. */
  readonly delegation:
    | (PolicyDelegation & {
        readonly hashes: readonly string[]
        /** jtis of the tokens the chain was exchanged from. */
        readonly from: readonly string[]
        readonly agentKeys: readonly string[]
        readonly facts: readonly TokenFacts[]
      })
    | null
  /** Sender-constrained (`cnf` present). */
  readonly constrained: boolean
  /** Set once the manifest is known (the hash is in the token, so it never changes). */
  principal: PolicyPrincipal | null
}
