/**
 * The revocation source (docs/reference.md "Revocation"): persist the entry, audit
 * it, publish it on the feed. Used by `POST /admin/v1/revocations` and by
 * RFC 7009 `POST /oauth2/revoke`.
 */
import { NotFound, Unavailable, Conflict } from '../../errors.js'
import type { TokenFacts } from '../../store/deny-list.js'
import { REVOCATION_PERMANENT, type Revocation, type RevocationType } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { kpiBook } from '../admin/kpis.js'
import { directoryFor } from '../token/directory.js'
import { revocationMatches } from './match.js'
import { epochSeconds, epochSecondsOrNull } from '../../lib/clock.js'

/** A revocation to record (validated). Times in epoch ms. */
export interface NewRevocation {
  type: RevocationType
  value: string
  tenant: string | null
  agentId: string | null
  reason: string | null
  /** When no matching token can still be alive; REVOCATION_PERMANENT for agent, client and tenant entries. */
  expiresAt: number
}

/** Revocation types that hold until an admin lifts them (docs/reference.md "Revocation"). */
export const LIFTABLE_TYPES: ReadonlySet<RevocationType> = new Set(['agent', 'client', 'tenant'])

export interface RecordOptions {
  /** `admin:<id>`, `client:<id>`, `system`. */
  actor: string
  /** Admin API (`admin.revocation_created`, plus `token.revoked` for a jti) or RFC 7009 (`token.revoked`). */
  via: 'admin' | 'client' | 'system'
}

/**
 * When an entry stops mattering. `agent`, `client` and `tenant` entries never
 * do by themselves: they hold (and the token endpoint issues nothing for
 * them) until an admin lifts them, so REVOCATION_PERMANENT. The others end
 * when no token they could match can be alive: tokens live at most
 * tokens.maxTtlSeconds, so now + max TTL + skew for `jti` and `kid`, and
 * T + max TTL + skew for `issued_before T`.
 */
export function revocationExpiry(deps: ControlPlaneDeps, type: RevocationType, value: string, now: number): number {
  if (LIFTABLE_TYPES.has(type)) return REVOCATION_PERMANENT
  const { maxTtlSeconds, clockSkewSeconds } = deps.config.tokens
  const span = (maxTtlSeconds + clockSkewSeconds) * 1000
  if (type === 'issued_before') return Number(value) * 1000 + span
  return now + span
}

/** Persists, audits and publishes. Rejects with 503 when auditing or publishing failed (the entry is stored either way). */
export async function recordRevocation(deps: ControlPlaneDeps, input: NewRevocation, opts: RecordOptions): Promise<Revocation> {
  const now = deps.clock.now()
  const r = await deps.store.revocations.add({ ...input, createdAt: now })
  // In force at this control plane's token endpoint before the answer, whatever the feed does.
  directoryFor(deps).standing.apply(r)
  deps.metrics.revocations.inc({ type: r.type })
  kpiBook(deps).recordRevocation(deps.clock.now(), r.tenant ?? undefined)
  const data = { seq: r.seq, type: r.type, value: r.value, agent_id: r.agentId, reason: r.reason, expires_at: r.expiresAt }
  const audits: Promise<void>[] = []
  if (opts.via === 'admin')
    audits.push(deps.audit.append({ type: 'admin.revocation_created', tenant: r.tenant, actor: opts.actor, subject: `${r.type}:${r.value}`, data }))
  if (r.type === 'jti' || opts.via !== 'admin')
    audits.push(deps.audit.append({ type: 'token.revoked', tenant: r.tenant, actor: opts.actor, subject: r.value, data }))
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

/** Who lifts, and what the lift says. */
export interface LiftOptions {
  /** `admin:<id>` or `console:<id>`. */
  actor: string
}

/** A lift's result: the ended entry and the `issued_before` entry that keeps its earlier tokens refused (null when none was needed). */
export interface Lifted {
  revocation: Revocation
  issuedBefore: Revocation | null
}

/**
 * The `issued_before` entry a lift leaves behind: lifting lets the agent,
 * client or tenant get new tokens, never brings back those minted before the
 * revocation (a leaked token must not come back to life). It covers every
 * `iat` up to the second the revocation was made in (a token minted in that
 * second may predate it; `iat` has no finer grain), so a token minted after
 * a lift within that same second is refused too. Scoped to the tenant, or to
 * the agent (for a client entry, the agent the client id belongs to). Null
 * when no token from before the revocation can still be alive, or the
 * client id names nothing any more.
 */
async function issuedBeforeFor(deps: ControlPlaneDeps, r: Revocation, at: number): Promise<Omit<NewRevocation, 'expiresAt'> | null> {
  const t = Math.floor(r.createdAt / 1000) + 1
  const { maxTtlSeconds, clockSkewSeconds } = deps.config.tokens
  if (t + maxTtlSeconds + clockSkewSeconds <= Math.floor(at / 1000)) return null
  const value = String(t)
  const reason = `tokens minted before revocation ${r.seq} (${r.type} ${r.value}), which was lifted`
  if (r.type === 'tenant') return { type: 'issued_before', value, tenant: r.value, agentId: null, reason }
  if (r.tenant === null) return null
  let agentId: string | null = r.type === 'agent' ? r.value : null
  if (r.type === 'client') {
    // A client id is a bootstrap credential's or an agent's own (private_key_jwt, tls_client_auth).
    const cred = await deps.store.credentials.get(r.value)
    if (cred && cred.tenant === r.tenant) agentId = cred.agentId
    else {
      const agent = await deps.store.agents.getByClientId(r.value)
      if (agent && agent.tenant === r.tenant) agentId = agent.agentId
    }
  }
  return agentId === null ? null : { type: 'issued_before', value, tenant: r.tenant, agentId, reason }
}

/**
 * Lifts a standing (`agent`, `client` or `tenant`) entry, the caller having
 * checked the admin may: first records an `issued_before` entry so tokens
 * minted before the revocation stay refused (issuedBeforeFor), then ends the entry in the store under the next
 * feed seq, drops it from this control plane's token endpoint, publishes
 * `revocation_lifted` and audits `admin.revocation_lifted`. Lifting an
 * entry already lifted publishes the lift again (so a 503 can be retried)
 * and audits nothing new. NotFound when the entry is neither in force nor
 * lifted; 503 when publishing or auditing failed (the lift holds either way).
 */
export async function liftRevocation(deps: ControlPlaneDeps, r: Revocation, opts: LiftOptions): Promise<Lifted> {
  if (!LIFTABLE_TYPES.has(r.type)) throw new Conflict(`a ${r.type} revocation is not lifted: it ends by itself once no token it matches can be alive`)
  let lifted = r
  let issuedBefore: Revocation | null = null
  /** This call lifted it (and so audits it); false when repeating a lift. */
  let won = false
  if (r.liftedAt === undefined) {
    const at = deps.clock.now()
    const before = await issuedBeforeFor(deps, r, at)
    // Recorded first: the earlier tokens are refused before the entry stops covering them.
    if (before)
      issuedBefore = await recordRevocation(
        deps,
        { ...before, expiresAt: revocationExpiry(deps, 'issued_before', before.value, at) },
        { actor: opts.actor, via: 'admin' },
      )
    const ended = await deps.store.revocations.lift(r.seq, at, opts.actor)
    // null: lifted (or ended) between the caller's read and ours.
    const now = ended ?? (await deps.store.revocations.get(r.seq))
    if (!now || now.liftedAt === undefined) throw new NotFound(`revocation ${r.seq} is not in force`)
    lifted = now
    won = ended !== null
  }
  const event = { kind: 'revocation_lifted' as const, seq: lifted.liftSeq!, revocation: lifted }
  directoryFor(deps).standing.lift(lifted, event.seq)
  const audits: Promise<void>[] = []
  if (won) {
    audits.push(
      deps.audit.append({
        type: 'admin.revocation_lifted',
        tenant: lifted.tenant,
        actor: opts.actor,
        subject: `${lifted.type}:${lifted.value}`,
        data: {
          seq: lifted.seq,
          lift_seq: lifted.liftSeq,
          type: lifted.type,
          value: lifted.value,
          reason: lifted.reason,
          issued_before_seq: issuedBefore?.seq ?? null,
        },
      }),
    )
  }
  const [published, ...audited] = await Promise.allSettled([deps.feed.publish(event), ...audits])
  if (published!.status === 'rejected') {
    deps.logger.error({ err: published!.reason, seq: lifted.seq }, 'revocation lifted but the lift not published')
    throw new Unavailable(`revocation ${lifted.seq} was lifted but gateways were not told; repeat the DELETE to publish it again`)
  }
  const failed = audited.find((a) => a.status === 'rejected')
  if (failed) {
    deps.logger.error({ err: (failed as PromiseRejectedResult).reason, seq: lifted.seq }, 'revocation lifted but not audited')
    throw new Unavailable(`revocation ${lifted.seq} was lifted but its audit event could not be written`)
  }
  return { revocation: lifted, issuedBefore }
}

/** The live entry covering a token, or null (introspection). */
export function findRevocation(deps: ControlPlaneDeps, facts: TokenFacts): Promise<Revocation | null> {
  return findRevocationOfAny(deps, [facts])
}

/** A live entry covering any of these tokens (a delegated token, its chain's agents, the tokens it came from), or null: one store read for all. */
export async function findRevocationOfAny(deps: ControlPlaneDeps, facts: readonly TokenFacts[]): Promise<Revocation | null> {
  const candidates = await deps.store.revocations.listCovering(facts, deps.clock.now())
  return candidates.find((r) => facts.some((f) => revocationMatches(r, f))) ?? null
}

/** Admin-API form of an entry (snake_case, times in epoch seconds like the rest of the admin API). */
export function revocationJson(r: Revocation): Record<string, unknown> {
  return {
    seq: r.seq,
    type: r.type,
    value: r.value,
    tenant: r.tenant,
    agent_id: r.agentId,
    reason: r.reason,
    created_at: epochSeconds(r.createdAt),
    // null: in force until lifted.
    expires_at: r.expiresAt === REVOCATION_PERMANENT ? null : epochSeconds(r.expiresAt),
    ...(r.liftedAt !== undefined ? { lifted_at: epochSecondsOrNull(r.liftedAt), lifted_by: r.liftedBy ?? null, lift_seq: r.liftSeq ?? null } : {}),
  }
}
