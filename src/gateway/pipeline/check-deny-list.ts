import { AegisError } from '../../errors.js'
import type { GatewayDeps } from '../deps.js'
import type { TokenView } from './token-view.js'
import { invalidToken } from './verify-token.js'

const NOT_READY = new AegisError('temporarily_unavailable', 'gateway has not loaded its revocation feed yet', { headers: { 'retry-after': '1' } })

/**
 * Step 2 (docs/reference.md "Gateway", "Revocation"): refuses a token matched by the
 * deny list (jti, agent, client, tenant, kid, issued before T; for a
 * delegated token also each chain agent and each token it was exchanged
 * from), and one
 * minted against a capability manifest that is no longer the agent's current
 * one (or for an agent the feed says is deleted or does not know). Fails
 * closed (503) until the feed's first snapshot was loaded.
 */
export function checkDenyList(deps: GatewayDeps, view: TokenView): void {
  if (!deps.state.snapshotLoaded) throw NOT_READY
  const hit = deps.denyList.match(view.facts)
  if (hit !== null) throw invalidToken('token revoked')
  const d = view.delegation
  if (d !== null) {
    // Every agent of the chain: unrevoked, and still holding the manifest it had when the chain reached it.
    for (let i = 0; i < d.chain.length; i++) {
      if (i > 0 && deps.denyList.match(d.facts[i]!) !== null) throw invalidToken("an agent of the token's delegation chain is revoked")
      const held = deps.state.agentHash(d.agentKeys[i]!)
      if (held !== d.hashes[i]) {
        if (held === undefined || held === null) throw invalidToken("an agent of the token's delegation chain is unknown or deleted")
        throw invalidToken("an agent of the token's delegation chain changed its capabilities")
      }
    }
    // Every token the chain was exchanged from: revoking one revokes what was exchanged from it.
    for (const jti of d.from) if (deps.denyList.match({ ...view.facts, jti }) !== null) throw invalidToken('a token this one was exchanged from is revoked')
    return
  }
  const current = deps.state.agentHash(view.agentKey)
  if (current !== view.capabilityHash) {
    if (current === undefined) throw invalidToken('token agent unknown to this gateway')
    if (current === null) throw invalidToken('token agent deleted')
    throw invalidToken("token capability_hash is not the agent's current one")
  }
}
