/**
 * The revocation source (DESIGN.md "Revocation"): persist the entry, audit
 * it, publish it on the feed. Used by `POST /admin/v1/revocations` and by
 * RFC 7009 `POST /oauth2/revoke`.
 */
import { Unavailable } from '../../errors.js'
import type { TokenFacts } from '../../store/gateway-state.js'
import type { Revocation, RevocationType } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { kpiBook } from '../admin/kpis.js'
import { revocationMatches } from './match.js'

/** A revocation to record (validated). Times in epoch ms. */
export interface NewRevocation {
  type: RevocationType
  value: string
  tenant: string | null
  agentId: string | null
  reason: string | null
  /** When no matching token can still be alive. */
  expiresAt: number
}

export interface RecordOptions {
  /** `admin:<id>`, `client:<id>`, `system`. */
  actor: string
  /** Admin API (`admin.revocation_created`, plus `token.revoked` for a jti) or RFC 7009 (`token.revoked`). */
  via: 'admin' | 'client' | 'system'
}

/**
 * When an entry stops mattering: no token that it could match can be alive
 * after it. Tokens live at most tokens.maxTtlSeconds, so for every type but
 * `issued_before` that is now + max TTL + skew; for `issued_before T` it is
 * T + max TTL + skew (tokens issued before T expire by then).
 */
export function revocationExpiry(deps: ControlPlaneDeps, type: RevocationType, value: string, now: number): number {
  const { maxTtlSeconds, clockSkewSeconds } = deps.config.tokens
  const span = (maxTtlSeconds + clockSkewSeconds) * 1000
  if (type === 'issued_before') return Number(value) * 1000 + span
  return now + span
}

/** Persists, audits and publishes. Rejects with 503 when auditing or publishing failed (the entry is stored either way). */
export async function recordRevocation(deps: ControlPlaneDeps, input: NewRevocation, opts: RecordOptions): Promise<Revocation> {
  const now = deps.clock.now()
  const r = await deps.store.revocations.add({ ...input, createdAt: now })
  deps.metrics.revocations.inc({ type: r.type })
  kpiBook(deps).recordRevocation(deps.clock.now(), r.tenant ?? undefined)
  const data = { seq: r.seq, type: r.type, value: r.value, agent_id: r.agentId, reason: r.reason, expires_at: r.expiresAt }
  const audits: Promise<void>[] = []
  if (opts.via === 'admin') audits.push(deps.audit.append({ type: 'admin.revocation_created', tenant: r.tenant, actor: opts.actor, subject: `${r.type}:${r.value}`, data }))
  if (r.type === 'jti' || opts.via !== 'admin') audits.push(deps.audit.append({ type: 'token.revoked', tenant: r.tenant, actor: opts.actor, subject: r.value, data }))
  const [published, ...audited] = await Promise.allSettled([deps.feed.publish({ kind: 'revocation', revocation: r }), ...audits])
  if (published!.status === 'rejected') {
    deps.logger.error({ err: published!.reason, seq: r.seq }, 'revocation stored but not published')
    throw new Unavailable(`revocation ${r.seq} was stored but could not be published; gateways load it when they reconnect`)
  }
  const failed = audited.find((a) => a.status === 'rejected')
  if (failed) {
    deps.logger.error({ err: (failed as PromiseRejectedResult).reason, seq: r.seq }, 'revocation published but not audited')
    throw new Unavailable(`revocation ${r.seq} is in force but its audit event could not be written`)
  }
  return r
}

/** The live entry covering a token, or null (introspection). */
export async function findRevocation(deps: ControlPlaneDeps, facts: TokenFacts): Promise<Revocation | null> {
  const active = await deps.store.revocations.listActive(deps.clock.now())
  return active.find((r) => revocationMatches(r, facts)) ?? null
}

/** Admin-API form of an entry (snake_case, times in epoch ms like the rest of the admin API). */
export function revocationJson(r: Revocation): Record<string, unknown> {
  return {
    seq: r.seq,
    type: r.type,
    value: r.value,
    tenant: r.tenant,
    agent_id: r.agentId,
    reason: r.reason,
    created_at: r.createdAt,
    expires_at: r.expiresAt,
  }
}
