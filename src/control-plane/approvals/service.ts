/**
 * Approval requests (docs/reference.md "Approvals"): opening them for an
 * `approval_needed` decision, deciding them, expiring them, and the one-time
 * override token an approval yields.
 *
 * Rules enforced here, whatever channel a decision arrives through:
 * - only an approver in the request's group, or an admin whose scope covers
 *   the tenant, may decide; role `gateway` never;
 * - a chat or webhook identity (`slack:<team>/<user>`, `teams:…`,
 *   `webhook:…`) counts only when it is linked to a live Aegis approver
 *   (`AdminToken.linkedIdentities`);
 * - an agent never decides its own request (an approver token linked to
 *   `agent:<tenant>/<agent_id>` is refused for that agent's requests);
 * - `requireConsole` requests accept only console (admin login) decisions;
 * - a decision on an expired or already decided request is a 409 that says so.
 */
import type { AegisConfig } from '../../config/schema.js'
import { AegisError, Conflict, InvalidRequest, NotFound } from '../../errors.js'
import type { AdminPrincipal } from '../../http/admin-auth.js'
import { canonicalJson } from '../../lib/canonical-json.js'
import type { Clock } from '../../lib/clock.js'
import { sha256b64url } from '../../lib/hash.js'
import { randomId } from '../../lib/ids.js'
import type { Logger } from '../../observability/logger.js'
import type { Metrics } from '../../observability/metrics.js'
import type { AdminToken, Approval, Store } from '../../store/types.js'
import type { AuditWriter } from '../audit/types.js'
import type { KeyManager } from '../keys/types.js'
import { belowBound, matchBudget, parseBudgets, type ApprovalBudget } from './budgets.js'
import { maskParams } from './mask.js'
import { mintOverrideToken } from './override.js'

/** What the gateway hands over for an `approval_needed` decision. */
export interface OpenApprovalInput {
  tenant: string
  agentId: string
  clientId: string
  tool: string
  params: Record<string, unknown>
  resource: string | null
  policyId: string
  policyVersion: string
  /** Approver group from `@approval("group")`. */
  group: string
  requireConsole: boolean
  /** RFC 6901 pointers (`/params/…`) masked in notifications (the policy's redact obligations). */
  mask?: string[]
  /** Reverse-proxy calls: the forwarded request, which the override binds (`request_hash`). */
  request?: ApprovalRequestBinding
}

/** The forwarded HTTP request of a reverse-proxy call, as the gateway decided it. */
export interface ApprovalRequestBinding {
  method: string
  path: string
  query: Record<string, string | string[]>
  /** base64url SHA-256 of an opaque body. */
  body_sha256?: string
}

/** Result of {@link ApprovalService.openApproval}. */
export interface OpenApprovalResult {
  approval: Approval
  /** An open request for exactly this action already existed and is returned again. */
  reused: boolean
  /** `<issuer>/v1/approvals/<id>`, polled by the agent with its access token. */
  statusUrl: string
  /** Why it was auto-approved, or why a budget did not apply; null when no budget matched. */
  note: string | null
}

/** Where a decision came from. */
export type DecisionChannel = 'console' | 'api' | 'slack' | 'teams' | 'webhook'

/** Who decides: an authenticated admin/approver token, or a linked chat/webhook identity. */
export type Approver = { kind: 'admin'; principal: AdminPrincipal } | { kind: 'linked'; identity: string }

export interface DecideInput {
  decision: 'approve' | 'deny'
  by: Approver
  reason: string | null
  via: DecisionChannel
}

/** What the requesting agent sees on `GET /v1/approvals/{id}`. */
export interface ApprovalStatusView {
  id: string
  status: Approval['status']
  expires_at: number
  override_token?: string
  /** Epoch seconds; present with override_token. */
  override_expires_at?: number
  reason?: string
}

/** Delivers notifications for new pending requests (see notifiers/dispatcher.ts). */
export interface ApprovalNotifier {
  notify(approval: Approval, maskedParams: Record<string, unknown>): void
  close(): Promise<void>
}

export interface ApprovalServiceDeps {
  config: AegisConfig
  store: Store
  keys: Pick<KeyManager, 'signJwt'>
  audit: Pick<AuditWriter, 'append'>
  clock: Clock
  logger: Logger
  metrics?: Metrics
  notifier?: ApprovalNotifier
  /** Expiry sweep period (ms). Default 5000. */
  sweepIntervalMs?: number
}

const TOOL = /^[A-Za-z0-9._:/-]{1,200}$/
const GROUP = /^[A-Za-z0-9._:-]{1,100}$/
const ID = /^apr_[A-Za-z0-9_-]{10,64}$/
const DAY_MS = 24 * 3600 * 1000
const LINKED = /^(slack|teams|webhook):[^\s]{1,300}$/

/** Approval requests, decisions, expiry and override tokens. One per control-plane process. */
export class ApprovalService {
  private readonly budgets: ApprovalBudget[]
  private readonly waiters = new Map<string, Set<() => void>>()
  private readonly opening = new Map<string, Promise<OpenApprovalResult>>()
  private readonly budgetLocks = new Map<string, Promise<unknown>>()
  private sweepTimer: NodeJS.Timeout | undefined
  private sweeping: Promise<void> | undefined
  private closed = false

  constructor(private readonly deps: ApprovalServiceDeps) {
    this.budgets = parseBudgets(deps.config.approvals.budgets)
  }

  /** Starts the expiry sweeper (unref'd timer). */
  start(): void {
    if (this.sweepTimer || this.closed) return
    this.sweepTimer = setInterval(() => {
      void this.sweepExpired()
    }, this.deps.sweepIntervalMs ?? 5000)
    this.sweepTimer.unref()
  }

  /** Stops the sweeper and the notifier; wakes every long-poll. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    await this.sweeping
    for (const set of this.waiters.values()) for (const wake of set) wake()
    this.waiters.clear()
    await this.deps.notifier?.close()
  }

  /** `<issuer>/v1/approvals/<id>`. */
  statusUrl(id: string): string {
    return `${this.deps.config.issuer.replace(/\/$/, '')}/v1/approvals/${encodeURIComponent(id)}`
  }

  /**
   * Opens (or returns the already open) request for this action. Audits
   * `approval.requested`; an automatic approval under a budget also audits
   * `approval.auto_approved`. Throws `rate_limited` (429) when the agent's or
   * tenant's open-request cap is reached, `invalid_request` for bad input.
   */
  async openApproval(input: OpenApprovalInput): Promise<OpenApprovalResult> {
    validateOpen(input)
    const paramsCanonical = canonicalJson(input.params)
    if (Buffer.byteLength(paramsCanonical) > this.deps.config.limits.bodyBytes) throw new InvalidRequest('parameters too large for an approval request')
    const paramsHash = sha256b64url(paramsCanonical)
    const requestCanonical = input.request === undefined ? null : canonicalJson(input.request)
    // Single flight per action in this process, so a burst of identical calls opens one request.
    const key = JSON.stringify([input.tenant, input.agentId, input.tool, paramsHash, input.resource, input.policyVersion, input.group, requestCanonical])
    const running = this.opening.get(key)
    if (running) return running.then((r) => ({ ...r, reused: true }))
    const p = this.doOpen(input, paramsCanonical, paramsHash, requestCanonical).finally(() => this.opening.delete(key))
    this.opening.set(key, p)
    return p
  }

  private async doOpen(input: OpenApprovalInput, paramsCanonical: string, paramsHash: string, requestCanonical: string | null): Promise<OpenApprovalResult> {
    const { store, clock, config } = this.deps
    const now = clock.now()
    const existing = await store.approvals.findOpen(input.tenant, input.agentId, input.tool, paramsHash, now)
    if (
      existing &&
      existing.status === 'pending' &&
      existing.expiresAt > now &&
      existing.resource === input.resource &&
      existing.policyVersion === input.policyVersion &&
      existing.group === input.group &&
      existing.requireConsole === input.requireConsole &&
      existing.requestCanonical === requestCanonical
    ) {
      return { approval: existing, reused: true, statusUrl: this.statusUrl(existing.id), note: null }
    }
    const approval: Approval = {
      id: randomId('apr'),
      tenant: input.tenant,
      agentId: input.agentId,
      tool: input.tool,
      paramsCanonical,
      paramsHash,
      resource: input.resource,
      requestCanonical,
      policyId: input.policyId,
      policyVersion: input.policyVersion,
      group: input.group,
      requireConsole: input.requireConsole,
      status: 'pending',
      createdAt: now,
      expiresAt: now + config.approvals.ttlSeconds * 1000,
      decidedAt: null,
      decidedBy: null,
      reason: null,
      overrideJti: null,
      deliveries: [],
    }
    const requested = {
      type: 'approval.requested',
      tenant: input.tenant,
      actor: `agent:${input.tenant}/${input.agentId}`,
      subject: approval.id,
      data: {
        agent_id: input.agentId,
        client_id: input.clientId,
        tool: input.tool,
        params_hash: paramsHash,
        resource: input.resource,
        policy_id: input.policyId,
        policy_version: input.policyVersion,
        group: input.group,
        require_console: input.requireConsole,
        expires_at: approval.expiresAt,
      },
    }

    // An automatic approval opens nothing a human must look at, so caps apply only after it.
    let note: string | null = null
    const budget = matchBudget(this.budgets, input)
    if (budget && input.requireConsole) note = 'not auto-approved: the policy requires a console decision'
    else if (budget) {
      const bound = belowBound(budget, input.params)
      if (bound.ok) {
        const auto = await this.tryAutoApprove(budget, approval, requested)
        if (auto.approved) return { approval: auto.approval, reused: false, statusUrl: this.statusUrl(approval.id), note: auto.note }
        note = auto.note
      } else {
        note = `not auto-approved: ${bound.why}; asking group ${input.group}`
      }
    }
    const openForAgent = await store.approvals.countOpen({ tenant: input.tenant, agentId: input.agentId, now })
    if (openForAgent >= config.approvals.maxOpenPerAgent) {
      await this.auditRefusal(
        input,
        paramsHash,
        `agent has ${openForAgent} open approval requests (approvals.maxOpenPerAgent = ${config.approvals.maxOpenPerAgent})`,
      )
      throw new AegisError(
        'rate_limited',
        `agent ${input.agentId} already has ${openForAgent} open approval requests (limit ${config.approvals.maxOpenPerAgent}); wait for them to ` +
          `be decided or expire`,
        { headers: { 'retry-after': '60' } },
      )
    }
    const openForTenant = await store.approvals.countOpen({ tenant: input.tenant, now })
    if (openForTenant >= config.approvals.maxOpenPerTenant) {
      await this.auditRefusal(
        input,
        paramsHash,
        `tenant has ${openForTenant} open approval requests (approvals.maxOpenPerTenant = ${config.approvals.maxOpenPerTenant})`,
      )
      throw new AegisError(
        'rate_limited',
        `tenant ${input.tenant} already has ${openForTenant} open approval requests (limit ${config.approvals.maxOpenPerTenant}); wait for them to ` +
          `be decided or expire`,
        { headers: { 'retry-after': '60' } },
      )
    }

    return this.createPending(approval, requested, input, note)
  }

  private async createPending(
    approval: Approval,
    requested: Parameters<AuditWriter['append']>[0],
    input: OpenApprovalInput,
    note: string | null,
  ): Promise<OpenApprovalResult> {
    // Audited before it exists, never the other way round (as token issuance).
    await this.deps.audit.append({ ...requested, data: { ...requested.data, note } })
    await this.deps.store.approvals.create(approval)
    this.deps.metrics?.approvalsOpened.inc()
    this.deps.notifier?.notify(approval, maskParams(input.params, input.mask ?? []))
    return { approval, reused: false, statusUrl: this.statusUrl(approval.id), note }
  }

  /**
   * Counts this budget's automatic approvals in the last 24 h from the audit
   * log (durable and shared by every control plane) and approves when under
   * `per_day`. Serialized per budget in this process and across processes by
   * the store's cluster lock; when another process holds the lock, a human
   * is asked (fail closed: never approve on a count that may be stale).
   */
  private async tryAutoApprove(
    budget: ApprovalBudget,
    approval: Approval,
    requested: Parameters<AuditWriter['append']>[0],
  ): Promise<{ approved: true; approval: Approval; note: string } | { approved: false; note: string }> {
    const lockKey = `approval-budget:${approval.tenant}:${budget.name}`
    const prev = this.budgetLocks.get(lockKey) ?? Promise.resolve()
    const run = prev
      .catch(() => {})
      .then(async () => {
        const res = await this.deps.store.tryWithLock(lockKey, async () => {
          const now = this.deps.clock.now()
          const used = await this.countAutoApprovals(approval.tenant, budget.name, now - DAY_MS)
          if (used >= budget.perDay) {
            return {
              approved: false as const,
              note: `not auto-approved: budget "${budget.name}" is used up (${used} of ${budget.perDay} in the last 24 hours); asking group ${approval.group}`,
            }
          }
          const decided: Approval = {
            ...approval,
            status: 'approved',
            decidedAt: now,
            decidedBy: `budget:${budget.name}`,
            reason: `auto-approved under budget "${budget.name}"`,
            overrideJti: randomId('ovr'),
          }
          // Audit first: the count comes from these events, so a failed write can only over-count (ask a human), never under-count.
          await this.deps.audit.append(requested)
          await this.deps.audit.append({
            type: 'approval.auto_approved',
            tenant: approval.tenant,
            actor: `budget:${budget.name}`,
            subject: approval.id,
            data: {
              budget: budget.name,
              used: used + 1,
              per_day: budget.perDay,
              tool: approval.tool,
              agent_id: approval.agentId,
              params_hash: approval.paramsHash,
            },
          })
          await this.deps.store.approvals.create(decided)
          this.deps.metrics?.approvalsOpened.inc()
          this.deps.metrics?.approvalsDecided.inc({ status: 'approved' })
          return {
            approved: true as const,
            approval: decided,
            note: `auto-approved under budget "${budget.name}" (${used + 1} of ${budget.perDay} in the last 24 hours)`,
          }
        })
        if (!res.ran)
          return {
            approved: false as const,
            note: `not auto-approved: budget "${budget.name}" is being counted by another control plane; asking group ${approval.group}`,
          }
        return res.value
      })
    this.budgetLocks.set(lockKey, run)
    try {
      return await run
    } finally {
      if (this.budgetLocks.get(lockKey) === run) this.budgetLocks.delete(lockKey)
    }
  }

  private async countAutoApprovals(tenant: string, budget: string, since: number): Promise<number> {
    let count = 0
    let cursor: number | undefined
    for (let page = 0; page < 1000; page++) {
      const events = await this.deps.store.audit.query({
        type: 'approval.auto_approved',
        tenant,
        since,
        limit: 500,
        ...(cursor !== undefined ? { cursor } : {}),
      })
      for (const e of events) if (e.data.budget === budget && e.ts >= since) count++
      if (events.length < 500) break
      cursor = events[events.length - 1]!.id
    }
    return count
  }

  private async auditRefusal(input: OpenApprovalInput, paramsHash: string, why: string): Promise<void> {
    await this.deps.audit.append({
      type: 'approval.refused',
      tenant: input.tenant,
      actor: `agent:${input.tenant}/${input.agentId}`,
      subject: null,
      data: { agent_id: input.agentId, tool: input.tool, params_hash: paramsHash, group: input.group, why },
    })
  }

  /** The request, or 404. */
  async get(id: string): Promise<Approval> {
    if (!ID.test(id)) throw new NotFound('no such approval request')
    const a = await this.deps.store.approvals.get(id)
    if (!a) throw new NotFound('no such approval request')
    return this.effective(a)
  }

  /** A pending request past its expiry reads as expired even before the sweeper ran. */
  effective(a: Approval): Approval {
    return a.status === 'pending' && a.expiresAt <= this.deps.clock.now() ? { ...a, status: 'expired' } : a
  }

  /**
   * Approves or denies. Audits `approval.approved` / `approval.denied` with
   * who, via and why. Throws `forbidden` (403) for someone who may not
   * decide, `conflict` (409) when the request expired or was already decided.
   */
  async decide(id: string, input: DecideInput): Promise<{ approval: Approval; overrideToken: string | null }> {
    const reason = input.reason === null ? null : String(input.reason)
    if (reason !== null && reason.length > 1000) throw new InvalidRequest('reason must be at most 1000 characters')
    const approval = await this.get(id)
    const who = await this.authorize(approval, input)
    this.assertOpen(approval)
    const now = this.deps.clock.now()
    const status = input.decision === 'approve' ? 'approved' : 'denied'
    const overrideJti = status === 'approved' ? randomId('ovr') : null
    const decided = await this.deps.store.approvals.decide(id, { status, decidedBy: who.actor, reason, decidedAt: now, overrideJti })
    if (!decided) {
      const current = await this.get(id)
      this.assertOpen(current)
      throw new Conflict('approval request changed while deciding; try again')
    }
    await this.deps.audit.append({
      type: `approval.${status}`,
      tenant: approval.tenant,
      actor: who.actor,
      subject: id,
      data: {
        via: input.via,
        reason,
        group: approval.group,
        tool: approval.tool,
        agent_id: approval.agentId,
        params_hash: approval.paramsHash,
        policy_version: approval.policyVersion,
        approver: who.approver,
      },
    })
    this.deps.metrics?.approvalsDecided.inc({ status })
    this.wake(id)
    const minted = mintOverrideToken(this.deps.keys, this.deps.config, decided, now)
    return { approval: decided, overrideToken: minted?.token ?? null }
  }

  /** 409 with a message naming what happened, unless pending and unexpired. */
  private assertOpen(a: Approval): void {
    const eff = this.effective(a)
    if (eff.status === 'expired') {
      throw new Conflict(
        `approval request ${a.id} expired at ${new Date(a.expiresAt).toISOString()}; it can no longer be decided (the agent must retry the call to ` +
          `open a new one)`,
      )
    }
    if (eff.status !== 'pending') {
      throw new Conflict(
        `approval request ${a.id} was already ${eff.status}${eff.decidedBy ? ` by ${eff.decidedBy}` : ''}` +
          `${eff.decidedAt ? ` at ${new Date(eff.decidedAt).toISOString()}` : ''}`,
      )
    }
  }

  /** Who may decide; returns the audit actor. */
  private async authorize(approval: Approval, input: DecideInput): Promise<{ actor: string; approver: string }> {
    const { by, via } = input
    const agentIdentity = `agent:${approval.tenant}/${approval.agentId}`
    let token: AdminToken | null
    let actor: string
    if (by.kind === 'admin') {
      if (via !== 'console' && via !== 'api') throw new AegisError('forbidden', `an admin token decides via console or api, not ${via}`)
      if (via === 'console' && !by.principal.viaConsole) throw new AegisError('forbidden', 'via console needs a console session')
      token = await this.deps.store.adminTokens.get(by.principal.id)
      actor = by.principal.actor
    } else {
      const identity = by.identity
      if (!LINKED.test(identity) || !identity.startsWith(`${via}:`)) throw new AegisError('forbidden', `identity does not match channel ${via}`)
      const candidates = (await this.deps.store.adminTokens.list()).filter((t) => t.revokedAt === null && t.linkedIdentities.includes(identity))
      if (candidates.length === 0) {
        await this.auditDecisionRefused(approval, identity, via, 'identity is not linked to an Aegis approver')
        throw new AegisError('forbidden', `${via} user is not linked to an Aegis approver`)
      }
      // Several tokens may link one identity; any one entitled to decide suffices.
      token = candidates.find((t) => this.entitled(t, approval) === null) ?? candidates[0]!
      actor = `${identity} as admin:${token.id}`
    }
    if (!token || token.revokedAt !== null) throw new AegisError('unauthorized', 'a valid admin bearer token is required')
    if (token.linkedIdentities.includes(agentIdentity) || actor === agentIdentity) {
      await this.auditDecisionRefused(approval, actor, via, 'an agent may not decide its own request')
      throw new AegisError('forbidden', 'an agent may not decide its own approval request')
    }
    const why = this.entitled(token, approval)
    if (why) {
      await this.auditDecisionRefused(approval, actor, via, why)
      throw new AegisError('forbidden', why)
    }
    if (approval.requireConsole && via !== 'console') {
      await this.auditDecisionRefused(approval, actor, via, 'policy requires a console decision')
      throw new AegisError('forbidden', 'this request may only be decided in the Aegis console (policy requires a console decision)')
    }
    return { actor, approver: `admin:${token.id}` }
  }

  /** null when the token may decide this request, else why not. */
  private entitled(token: AdminToken, approval: Approval): string | null {
    if (token.role !== 'admin' && token.role !== 'approver') return `role ${token.role} may not decide approval requests`
    if (token.tenant !== null && token.tenant !== approval.tenant) return "approver is outside this request's tenant"
    if (token.role === 'admin' || token.groups.includes(approval.group)) return null
    return `approver is not in group ${approval.group}`
  }

  private async auditDecisionRefused(approval: Approval, actor: string, via: DecisionChannel, why: string): Promise<void> {
    await this.deps.audit.append({ type: 'approval.decision_refused', tenant: approval.tenant, actor, subject: approval.id, data: { via, why } })
  }

  /**
   * The request as its agent sees it. 404 for an unknown id or another
   * agent's request (never revealing which). An approved request carries its
   * override token while that is valid (the same jti each time).
   */
  async statusFor(id: string, agent: { tenant: string; agentId: string }): Promise<ApprovalStatusView> {
    const a = await this.get(id)
    if (a.tenant !== agent.tenant || a.agentId !== agent.agentId) throw new NotFound('no such approval request')
    const view: ApprovalStatusView = { id: a.id, status: a.status, expires_at: Math.floor(a.expiresAt / 1000) }
    if (a.status === 'approved') {
      const minted = mintOverrideToken(this.deps.keys, this.deps.config, a, this.deps.clock.now())
      if (minted) {
        view.override_token = minted.token
        view.override_expires_at = minted.expiresAt
      } else view.reason = 'the override token expired; retry the call to open a new request'
    }
    if (a.status === 'denied' && a.reason) view.reason = a.reason
    return view
  }

  /**
   * Waits until the request leaves `pending` or `timeoutMs` passes, whichever
   * comes first; wakes at once on a decision in this process and checks the
   * store every second for decisions taken by other control planes.
   */
  async waitForChange(id: string, agent: { tenant: string; agentId: string }, timeoutMs: number, signal?: AbortSignal): Promise<ApprovalStatusView> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const view = await this.statusFor(id, agent)
      const remaining = deadline - Date.now()
      if (view.status !== 'pending' || remaining <= 0 || this.closed || signal?.aborted) return view
      await new Promise<void>((resolve) => {
        const set = this.waiters.get(id) ?? new Set<() => void>()
        this.waiters.set(id, set)
        const done = () => {
          clearTimeout(timer)
          set.delete(done)
          if (set.size === 0 && this.waiters.get(id) === set) this.waiters.delete(id)
          signal?.removeEventListener('abort', done)
          resolve()
        }
        const timer = setTimeout(done, Math.min(1000, remaining))
        set.add(done)
        signal?.addEventListener('abort', done, { once: true })
      })
    }
  }

  private wake(id: string): void {
    const set = this.waiters.get(id)
    if (set) for (const wake of [...set]) wake()
  }

  /** Marks pending requests past their expiry as expired and audits `approval.expired`. */
  async sweepExpired(): Promise<number> {
    if (this.sweeping) {
      await this.sweeping
      return 0
    }
    let n = 0
    this.sweeping = (async () => {
      try {
        const expired = await this.deps.store.approvals.expire(this.deps.clock.now())
        for (const a of expired) {
          await this.deps.audit.append({
            type: 'approval.expired',
            tenant: a.tenant,
            actor: 'system',
            subject: a.id,
            data: { tool: a.tool, agent_id: a.agentId, group: a.group, expires_at: a.expiresAt },
          })
          this.deps.metrics?.approvalsDecided.inc({ status: 'expired' })
          this.wake(a.id)
        }
        n = expired.length
      } catch (err) {
        this.deps.logger.error({ err }, 'approval expiry sweep failed')
      }
    })()
    try {
      await this.sweeping
    } finally {
      this.sweeping = undefined
    }
    return n
  }
}

function validateOpen(input: OpenApprovalInput): void {
  const bad = (what: string): never => {
    throw new InvalidRequest(what)
  }
  if (typeof input.tenant !== 'string' || input.tenant.length === 0 || input.tenant.length > 100) bad('tenant is required')
  if (typeof input.agentId !== 'string' || input.agentId.length === 0 || input.agentId.length > 200) bad('agent_id is required')
  if (typeof input.clientId !== 'string' || input.clientId.length > 200) bad('client_id must be a string')
  if (typeof input.tool !== 'string' || !TOOL.test(input.tool)) bad('tool must be a tool name')
  if (input.params === null || typeof input.params !== 'object' || Array.isArray(input.params)) bad('params must be a JSON object')
  if (input.resource !== null && (typeof input.resource !== 'string' || input.resource.length > 2000)) bad('resource must be a string or null')
  if (typeof input.policyId !== 'string' || input.policyId.length > 200) bad('policy_id must be a string')
  if (typeof input.policyVersion !== 'string' || input.policyVersion.length === 0 || input.policyVersion.length > 200) bad('policy_version is required')
  if (typeof input.group !== 'string' || !GROUP.test(input.group)) bad('group must be an approver group name')
  if (typeof input.requireConsole !== 'boolean') bad('require_console must be a boolean')
  if (input.mask !== undefined && (!Array.isArray(input.mask) || input.mask.length > 100 || input.mask.some((m) => typeof m !== 'string' || m.length > 500)))
    bad('mask must be a list of JSON pointers')
  if (input.request !== undefined) validateRequestBinding(input.request, bad)
}

const HTTP_METHOD = /^[A-Z]{1,16}$/
const SHA256_B64URL = /^[A-Za-z0-9_-]{43}$/

function validateRequestBinding(r: unknown, bad: (what: string) => never): void {
  if (r === null || typeof r !== 'object' || Array.isArray(r)) bad('request must be an object {method, path, query, body_sha256?}')
  const o = r as Record<string, unknown>
  for (const k in o) if (k !== 'method' && k !== 'path' && k !== 'query' && k !== 'body_sha256') bad(`unknown member "request.${k.slice(0, 64)}"`)
  if (typeof o.method !== 'string' || !HTTP_METHOD.test(o.method)) bad('request.method must be an HTTP method')
  if (typeof o.path !== 'string' || !o.path.startsWith('/') || o.path.length > 4096) bad('request.path must be a path')
  const q = o.query
  if (q === null || typeof q !== 'object' || Array.isArray(q)) bad('request.query must be an object')
  for (const v of Object.values(q as Record<string, unknown>)) {
    if (typeof v !== 'string' && !(Array.isArray(v) && v.every((e) => typeof e === 'string'))) bad('request.query values must be strings or lists of strings')
  }
  if (o.body_sha256 !== undefined && (typeof o.body_sha256 !== 'string' || !SHA256_B64URL.test(o.body_sha256)))
    bad('request.body_sha256 must be a base64url SHA-256')
}
