/**
 * Minting an access token (RFC 9068) once a grant has decided who gets what:
 * lifetime, claims, signature, the awaited `token.issued` audit event (no
 * token without it), metrics and KPIs.
 */
import { randomUUID } from 'node:crypto'
import { context } from '@opentelemetry/api'
import { endSpanWithError, startSpan } from '../../observability/tracing.js'
import { Unavailable } from '../../errors.js'
import type { Agent, Tenant } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import type { KpiBook } from '../admin/kpis.js'
import type { Directory } from './directory.js'

/** What a grant hands to the issuer. */
export interface IssueRequest {
  tenant: Tenant
  agent: Agent
  /** The authenticated client (bootstrap credential id, or the agent's client id). */
  clientId: string
  scope: string[]
  audiences: string[]
  /** grant_type, for audit and metrics. */
  grant: string
  /** Upper bound on the lifetime from the grant itself (e.g. a subject token's remaining life), seconds. */
  maxLifetimeSeconds?: number
  /** Asked lifetime in place of tokens.defaultTtlSeconds (`aegis token mint --ttl`); still capped by the agent's and the global maximum. */
  lifetimeSeconds?: number
  /** `sub` when it is not the agent: the person a delegated token acts for (docs/delegation.md). */
  subject?: string
  /** `capability_hash` when it is not the agent's: a delegated token's intersection manifest. */
  capabilityHash?: string
  /** Extra claims (`cnf` for sender-constrained tokens). */
  extraClaims?: Record<string, unknown>
  /** `token_type` of the response (default Bearer; DPoP for DPoP-bound tokens, RFC 9449 §5). */
  tokenType?: 'Bearer' | 'DPoP'
  /** RFC 8693 §2.2.1 `issued_token_type`, for token exchange. */
  issuedTokenType?: string
  /** Extra fields for the `token.issued` audit event (e.g. the subject token's issuer and subject). */
  auditData?: Record<string, unknown>
}

/** RFC 6749 §5.1 success body. */
export interface TokenResponse {
  access_token: string
  token_type: 'Bearer' | 'DPoP'
  expires_in: number
  scope: string
  issued_token_type?: string
}

export interface IssuedToken {
  response: TokenResponse
  jti: string
  /** Epoch seconds. */
  exp: number
  kid: string
}

/** The claim set of docs/reference.md §Access token claims; the lifetime is min(default, agent cap, global cap, grant cap). */
export class TokenIssuer {
  private readonly headerBase = { typ: 'at+jwt' }

  constructor(
    private readonly deps: ControlPlaneDeps,
    private readonly dir: Directory,
    private readonly kpis: KpiBook,
  ) {}

  lifetime(agent: Agent, grantCap?: number, asked?: number): number {
    const t = this.deps.config.tokens
    let ttl = Math.min(asked ?? t.defaultTtlSeconds, agent.maxTtlSeconds, t.maxTtlSeconds)
    if (grantCap !== undefined) ttl = Math.min(ttl, grantCap)
    return Math.max(1, Math.floor(ttl))
  }

  /**
   * Signs, audits (awaited), counts. Rejects with 503 when the audit write
   * fails: no token then. Traced as an `aegis.token.issue` span (child of the
   * active context): tenant, agent, client, grant, lifetime, kid, policy
   * version, latency; never the token.
   */
  async issue(req: IssueRequest): Promise<IssuedToken> {
    const started = performance.now()
    const span = startSpan('aegis.token.issue', context.active(), {
      'aegis.tenant': req.tenant.id,
      'aegis.agent': req.agent.agentId,
      'aegis.client_id': req.clientId,
      'aegis.grant': req.grant,
    })
    try {
      const t = await this.mint(req)
      span.setAttributes({
        'aegis.token.lifetime_seconds': t.response.expires_in,
        'aegis.token.kid': t.kid,
        'aegis.policy_version': this.dir.policyVersion(req.tenant.id),
        'aegis.latency_ms': performance.now() - started,
      })
      span.end()
      return t
    } catch (err) {
      span.setAttribute('aegis.latency_ms', performance.now() - started)
      endSpanWithError(span, err)
      throw err
    }
  }

  private async mint(req: IssueRequest): Promise<IssuedToken> {
    const { deps } = this
    const now = deps.clock.now()
    const iat = Math.floor(now / 1000)
    const ttl = this.lifetime(req.agent, req.maxLifetimeSeconds, req.lifetimeSeconds)
    const exp = iat + ttl
    const jti = randomUUID()
    const scope = req.scope.join(' ')
    const aud = req.audiences.length === 1 ? req.audiences[0]! : req.audiences
    const policyVersion = this.dir.policyVersion(req.tenant.id)
    const payload: Record<string, unknown> = {
      iss: deps.config.issuer,
      sub: req.subject ?? req.agent.agentId,
      agent_id: req.agent.agentId,
      client_id: req.clientId,
      tenant: req.tenant.id,
      aud,
      scope,
      iat,
      nbf: iat,
      exp,
      jti,
      policy_version: policyVersion,
      capability_hash: req.capabilityHash ?? req.agent.capabilityHash,
    }
    if (req.extraClaims) Object.assign(payload, req.extraClaims)
    const { jwt, kid } = await deps.keys.signJwtAsync(this.headerBase, payload)
    try {
      await deps.audit.append({
        type: 'token.issued',
        tenant: req.tenant.id,
        actor: `agent:${req.tenant.id}/${req.agent.agentId}`,
        subject: jti,
        data: {
          ...req.auditData,
          jti,
          agent_id: req.agent.agentId,
          client_id: req.clientId,
          scope,
          aud: req.audiences,
          exp,
          kid,
          grant_type: req.grant,
          policy_version: policyVersion,
          capability_hash: req.capabilityHash ?? req.agent.capabilityHash,
          ...(req.extraClaims?.cnf ? { cnf: req.extraClaims.cnf } : {}),
        },
      })
    } catch (err) {
      throw new Unavailable('the audit log is unavailable; no token was issued', { cause: err })
    }
    deps.metrics.countIssued(req.tenant.id, req.grant)
    deps.metrics.tokenLifetime.observe(ttl)
    this.kpis.recordIssued(now, ttl, req.tenant.id)
    const response: TokenResponse = { access_token: jwt, token_type: req.tokenType ?? 'Bearer', expires_in: ttl, scope }
    if (req.issuedTokenType) response.issued_token_type = req.issuedTokenType
    return { response, jti, exp, kid }
  }
}
