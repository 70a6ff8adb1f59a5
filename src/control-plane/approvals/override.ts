/**
 * One-time override tokens (docs/reference.md "Approvals"). On approval the control
 * plane mints a JWT the agent sends back in `Aegis-Override`; the gateway
 * (gateway/approvals/verify-override.ts) accepts it only for exactly the
 * approved action, once.
 *
 * Header: `{alg: "EdDSA", kid, typ: "aegis-override+jwt"}`, its own `typ` so
 * that it can never pass as an access token (`at+jwt`) or vice versa
 * (RFC 8725 §3.11).
 *
 * Claims:
 * - `iss` = the issuer, `aud` = the gateway audience (`audience`);
 * - `sub` = `agent_id` = the requesting agent, `tenant`;
 * - `tool` = the approved tool (a private claim name; the request's action);
 * - `params_hash` = base64url(SHA-256(RFC 8785 canonical JSON of the params));
 * - `resource` = the call's target, or null;
 * - `request_hash` = base64url(SHA-256(RFC 8785 canonical JSON of the
 *   forwarded request `{method, path, query, body_sha256?}`)), only for
 *   reverse-proxy calls: the override is then good for that request alone;
 * - `policy_version` = the bundle version that asked for approval;
 * - `approval_id` = the request's id;
 * - `jti` = single-use id (claimed in the gateway's replay cache);
 * - `iat` = `nbf` = decision time, `exp` = `iat + tokens.overrideTtlSeconds`.
 *
 * Every claim derives from the stored request, so fetching the token twice
 * yields the same `jti` and `exp` (re-signed bytes are identical while the
 * signing key is unchanged): a second copy grants nothing, the gateway takes
 * a jti once.
 */
import type { Approval } from '../../store/types.js'
import type { KeyManager } from '../keys/types.js'
import { sha256b64url } from '../../lib/hash.js'

/** JOSE `typ` of override tokens. The gateway's verifier checks the same literal. */
export const OVERRIDE_TYP = 'aegis-override+jwt'

/** The settings minting reads (a subset of AegisConfig). */
export interface OverrideConfig {
  issuer: string
  audience: string
  tokens: { overrideTtlSeconds: number }
}

/** The claims of an override token, as minted. */
export interface OverrideClaims {
  iss: string
  aud: string
  sub: string
  agent_id: string
  tenant: string
  tool: string
  params_hash: string
  resource: string | null
  /** Reverse-proxy calls only. */
  request_hash?: string
  policy_version: string
  approval_id: string
  jti: string
  /** Epoch seconds. */
  iat: number
  nbf: number
  exp: number
}

/** Claims for an approved request; null when it is not approved or has no override jti. */
export function overrideClaims(approval: Approval, config: OverrideConfig): OverrideClaims | null {
  if (approval.status !== 'approved' || !approval.overrideJti || approval.decidedAt === null) return null
  const iat = Math.floor(approval.decidedAt / 1000)
  const claims: OverrideClaims = {
    iss: config.issuer,
    aud: config.audience,
    sub: approval.agentId,
    agent_id: approval.agentId,
    tenant: approval.tenant,
    tool: approval.tool,
    params_hash: approval.paramsHash,
    resource: approval.resource,
    policy_version: approval.policyVersion,
    approval_id: approval.id,
    jti: approval.overrideJti,
    iat,
    nbf: iat,
    exp: iat + config.tokens.overrideTtlSeconds,
  }
  if (approval.requestCanonical !== null) claims.request_hash = sha256b64url(approval.requestCanonical)
  return claims
}

/**
 * Signs the override token of an approved request, or returns null when it
 * has none or it expired (`nowMs` epoch ms).
 */
export function mintOverrideToken(
  keys: Pick<KeyManager, 'signJwt'>,
  config: OverrideConfig,
  approval: Approval,
  nowMs: number,
): { token: string; expiresAt: number } | null {
  const claims = overrideClaims(approval, config)
  if (!claims || claims.exp * 1000 <= nowMs) return null
  const { jwt } = keys.signJwt({ typ: OVERRIDE_TYP }, { ...claims })
  return { token: jwt, expiresAt: claims.exp }
}
