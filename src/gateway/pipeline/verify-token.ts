import { AegisError } from '../../errors.js'
import { VerifyError, type VerifiedToken } from '../../verify/index.js'
import { DelegationError, readDelegation, type DelegationChain } from '../../lib/delegation.js'
import { agentKey } from '../state.js'
import type { GatewayDeps } from '../deps.js'
import type { TokenView } from './token-view.js'

const views = new WeakMap<VerifiedToken, TokenView | AegisError>()
// policy_version values the control plane mints when the tenant had no active bundle.
const NO_BUNDLE = new Set(['none', 'strict', ''])
const NO_SCOPES: readonly string[] = Object.freeze([])
// A natural ordering: "2026-11-28.10" is newer than "2026-11-28.9".
const versionOrder = new Intl.Collator('en', { numeric: true, sensitivity: 'base' })

/** Thrown for every token the gateway refuses: 401 + `WWW-Authenticate: Bearer error="invalid_token"`. */
export function invalidToken(message: string, cause?: unknown): AegisError {
  return new AegisError('invalid_token', message, cause === undefined ? undefined : { cause })
}

/** True when the verifier could succeed after fetching keys (unknown kid, keys not loaded yet). */
export function needsKeys(err: unknown): boolean {
  return err instanceof VerifyError && (err.reason === 'unknown_kid' || err.reason === 'keys_not_loaded')
}

/**
 * Maps a verifier failure to the wire error; anything else is returned as is.
 * Keys never loaded (control plane unreachable since start) is the gateway's
 * problem, not the token's: 503, so clients retry instead of discarding a
 * good token.
 */
export function verifyFailure(err: unknown): unknown {
  if (err instanceof VerifyError) {
    if (err.reason === 'keys_not_loaded')
      return new AegisError('temporarily_unavailable', 'gateway has not loaded its verification keys yet', { cause: err, headers: { 'retry-after': '1' } })
    return invalidToken(err.message, err)
  }
  return err
}

/**
 * Step 1 (docs/reference.md "Gateway"): RFC 8725 verification by `aegis/verify`
 * (cached by the token until `exp`), then the Aegis claims the
 * pipeline relies on and the minimum accepted `policy_version`. Synchronous;
 * throws `invalid_token`. A token whose `kid` is unknown makes the caller go
 * through `verifier.verify`, which waits for keys (see `needsKeys`).
 */
export function verifyToken(deps: GatewayDeps, token: string): TokenView {
  return viewOf(deps, deps.verifier.verifySync(token))
}

/** The view of a verified token (derived once per verified token). */
export function viewOf(deps: GatewayDeps, verified: VerifiedToken): TokenView {
  let view = views.get(verified)
  if (view === undefined) {
    view = deriveView(deps, verified)
    views.set(verified, view)
  }
  if (view instanceof AegisError) throw view
  return view
}

function deriveView(deps: GatewayDeps, v: VerifiedToken): TokenView | AegisError {
  const c = v.claims
  const agentId = c.agent_id ?? c.sub
  if (typeof c.tenant !== 'string' || c.tenant.length === 0) return invalidToken('token lacks the tenant claim')
  let chain: DelegationChain | null = null
  try {
    chain = readDelegation(c)
  } catch (err) {
    if (err instanceof DelegationError) return invalidToken(`token delegation claims refused: ${err.message}`)
    throw err
  }
  // Only a person's delegated token names someone else than its agent as sub (readDelegation checked that pairing).
  if (c.agent_id !== undefined && c.agent_id !== c.sub && chain?.user == null) return invalidToken('token agent_id and sub differ')
  if (typeof c.client_id !== 'string' || c.client_id.length === 0) return invalidToken('token lacks the client_id claim')
  if (typeof c.capability_hash !== 'string' || c.capability_hash.length === 0) return invalidToken('token lacks the capability_hash claim')
  const policyVersion = typeof c.policy_version === 'string' ? c.policy_version : null
  const min = deps.config.gateway.minPolicyVersion
  if (min !== undefined && min !== '') {
    // Minted under no bundle at all ("none"/"strict"/absent), or under one older than the minimum: not accepted.
    if (policyVersion === null || NO_BUNDLE.has(policyVersion) || versionOrder.compare(policyVersion, min) < 0)
      return invalidToken('token minted under a policy_version older than this gateway accepts')
  }
  return {
    verified: v,
    facts: { jti: c.jti, tenant: c.tenant, agentId, clientId: c.client_id, kid: v.kid, iat: c.iat },
    exp: c.exp,
    scopes: typeof c.scope === 'string' && c.scope.length > 0 ? Object.freeze(c.scope.split(' ').filter((s) => s.length > 0)) : NO_SCOPES,
    policyVersion,
    capabilityHash: c.capability_hash,
    agentKey: agentKey(c.tenant, agentId),
    delegation:
      chain === null
        ? null
        : Object.freeze({
            chain: chain.chain,
            depth: chain.depth,
            user: chain.user,
            userIssuer: chain.userIssuer,
            userResources: chain.userResources,
            hashes: chain.hashes,
            from: chain.from,
            agentKeys: Object.freeze(chain.chain.map((id) => agentKey(c.tenant as string, id))),
            // The deny-list facts of each chain agent, as if the token were its own (agent and issued-before entries match).
            facts: Object.freeze(
              chain.chain.map((id) =>
                Object.freeze({ jti: c.jti, tenant: c.tenant as string, agentId: id, clientId: c.client_id as string, kid: v.kid, iat: c.iat }),
              ),
            ),
          }),
    constrained: c.cnf !== undefined,
    principal: null,
  }
}
