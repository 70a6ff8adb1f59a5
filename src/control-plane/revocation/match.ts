import type { TokenFacts } from '../../store/deny-list.js'
import type { Revocation } from '../../store/types.js'

/**
 * Whether a revocation entry covers a token (docs/reference.md "Revocation"). Same
 * semantics as the gateway's deny list: `issued_before` covers tokens with
 * `iat` strictly before the value (epoch seconds), within its tenant (and
 * agent, when set).
 */
export function revocationMatches(r: Revocation, t: TokenFacts): boolean {
  switch (r.type) {
    case 'jti':
      return r.value === t.jti
    case 'agent':
      return r.value === t.agentId && (r.tenant === null || r.tenant === t.tenant)
    case 'client':
      return r.value === t.clientId && (r.tenant === null || r.tenant === t.tenant)
    case 'tenant':
      return r.value === t.tenant
    case 'kid':
      return r.value === t.kid
    case 'issued_before':
      return t.iat < Number(r.value) && (r.tenant === null || r.tenant === t.tenant) && (r.agentId === null || r.agentId === t.agentId)
    default:
      return false
  }
}
