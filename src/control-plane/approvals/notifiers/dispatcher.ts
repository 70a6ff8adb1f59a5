/**
 * Background delivery of approval notifications to the notifiers configured
 * for the request's approver group (`approvals.notifiers`, key = group, `"*"`
 * = every group). Each attempt's outcome is written to the request's
 * `deliveries` (visible in the admin API), so a failed delivery is never
 * silent. Retries network errors, 408, 429 (honouring Retry-After) and 5xx
 * with exponential backoff and full jitter; other 4xx fail at once (a wrong
 * URL does not get better).
 */
import type { NotifierConfig } from '../../../config/schema.js'
import type { Logger } from '../../../observability/logger.js'
import type { Approval, ApprovalDelivery, Store } from '../../../store/types.js'
import type { Clock } from '../../../lib/clock.js'
import type { ApprovalNotifier } from '../service.js'
import { consoleUrlFor, type ApprovalMessage } from './message.js'
import { buildSlackMessage } from './slack.js'
import { buildTeamsMessage } from './teams.js'
import { buildWebhookBody, signWebhook } from './webhook.js'

/** A validated notifier. `name` identifies it in `deliveries` without revealing the URL (Slack's URLs are secrets). */
export interface NotifierTarget {
  name: string
  type: NotifierConfig['type']
  url: string
  secret?: string
}

/** Validates `approvals.notifiers`; throws naming every problem. */
export function parseNotifiers(raw: unknown, fallbackWebhookSecret?: string): Map<string, NotifierTarget[]> {
  const out = new Map<string, NotifierTarget[]>()
  if (raw === undefined || raw === null) return out
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new Error('approvals.notifiers must be an object: {"group": [{"type","url","secret"?}]}')
  const problems: string[] = []
  for (const [group, list] of Object.entries(raw as Record<string, unknown>)) {
    if (!Array.isArray(list)) {
      problems.push(`approvals.notifiers.${group} must be an array`)
      continue
    }
    const targets: NotifierTarget[] = []
    list.forEach((n: unknown, i) => {
      const at = `approvals.notifiers.${group}[${i}]`
      const r = (n ?? {}) as Record<string, unknown>
      const type = r.type
      if (type !== 'slack' && type !== 'teams' && type !== 'webhook') {
        problems.push(`${at}.type must be slack, teams or webhook`)
        return
      }
      let url: URL
      try {
        url = new URL(String(r.url))
      } catch {
        problems.push(`${at}.url must be a URL`)
        return
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:') {
        problems.push(`${at}.url must be http(s)`)
        return
      }
      const secret = typeof r.secret === 'string' && r.secret.length > 0 ? r.secret : undefined
      if (type === 'webhook' && !secret && !fallbackWebhookSecret) {
        problems.push(`${at}: a webhook notifier needs "secret" (or approvals.webhookSecret)`)
        return
      }
      if (type === 'webhook' && (secret ?? fallbackWebhookSecret!).length < 16) {
        problems.push(`${at}: webhook secret must be at least 16 characters`)
        return
      }
      targets.push({
        name: `${group}/${type}#${i}@${url.host}`,
        type,
        url: url.toString(),
        ...(type === 'webhook' ? { secret: secret ?? fallbackWebhookSecret! } : {}),
      })
    })
    out.set(group, targets)
  }
  if (problems.length > 0) throw new Error(`invalid approval notifiers:\n  ${problems.join('\n  ')}`)
  return out
}

export interface DispatcherOptions {
  notifiers: Map<string, NotifierTarget[]>
  store: Pick<Store, 'approvals'>
  issuer: string
  clock: Clock
  logger: Logger
  /** Total attempts per notifier. Default 5. */
  attempts?: number
  /** First backoff (ms); doubles each retry, with full jitter. Default 1000. */
  baseDelayMs?: number
  /** Largest backoff (ms). Default 60000. */
  maxDelayMs?: number
  /** Per-attempt timeout (ms). Default 10000. */
  timeoutMs?: number
}

/** Sends notifications in the background; never throws into the caller. */
export class NotificationDispatcher implements ApprovalNotifier {
  private readonly tasks = new Set<Promise<void>>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private readonly controller = new AbortController()
  private readonly state = new Map<string, { deliveries: ApprovalDelivery[]; write: Promise<void> }>()
  private closed = false

  constructor(private readonly opts: DispatcherOptions) {}

  /** Notifiers for a group: its own plus the `"*"` ones. */
  targetsFor(group: string): NotifierTarget[] {
    return [...(this.opts.notifiers.get(group) ?? []), ...(group === '*' ? [] : (this.opts.notifiers.get('*') ?? []))]
  }

  notify(approval: Approval, maskedParams: Record<string, unknown>): void {
    if (this.closed) return
    const targets = this.targetsFor(approval.group)
    if (targets.length === 0) return
    const now = this.opts.clock.now()
    const entry = {
      deliveries: targets.map((t): ApprovalDelivery => ({ notifier: t.name, status: 'pending', attempts: 0, lastError: null, updatedAt: now })),
      write: Promise.resolve(),
    }
    this.state.set(approval.id, entry)
    this.persist(approval.id)
    const msg: ApprovalMessage = { approval, maskedParams, consoleUrl: consoleUrlFor(this.opts.issuer, approval.id) }
    targets.forEach((t, i) => {
      const task = this.deliver(approval.id, i, t, msg).catch((err) => this.opts.logger.error({ err, notifier: t.name }, 'approval notification task failed'))
      this.tasks.add(task)
      void task.finally(() => this.tasks.delete(task))
    })
  }

  /** Resolves once every delivery started so far has finished (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.tasks.size > 0) await Promise.allSettled([...this.tasks])
    await Promise.allSettled([...this.state.values()].map((s) => s.write))
  }

  async close(): Promise<void> {
    this.closed = true
    this.controller.abort()
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    await this.idle()
  }

  private persist(id: string): void {
    const entry = this.state.get(id)
    if (!entry) return
    const snapshot = entry.deliveries.map((d) => ({ ...d }))
    entry.write = entry.write
      .then(() => this.opts.store.approvals.setDeliveries(id, snapshot))
      .catch((err) => this.opts.logger.error({ err, approval: id }, 'recording notification delivery failed'))
    if (snapshot.every((d) => d.status !== 'pending'))
      void entry.write.finally(() => {
        if (this.state.get(id) === entry && entry.deliveries.every((d) => d.status !== 'pending')) this.state.delete(id)
      })
  }

  private record(id: string, index: number, patch: Partial<ApprovalDelivery>): void {
    const entry = this.state.get(id)
    if (!entry) return
    entry.deliveries[index] = { ...entry.deliveries[index]!, ...patch, updatedAt: this.opts.clock.now() }
    this.persist(id)
  }

  private async deliver(id: string, index: number, t: NotifierTarget, msg: ApprovalMessage): Promise<void> {
    const attempts = this.opts.attempts ?? 5
    const base = this.opts.baseDelayMs ?? 1000
    const cap = this.opts.maxDelayMs ?? 60000
    for (let n = 1; n <= attempts; n++) {
      if (this.closed) {
        this.record(id, index, { status: 'failed', lastError: 'control plane shut down before delivery' })
        return
      }
      const result = await this.attempt(t, msg)
      if (result.ok) {
        this.record(id, index, { status: 'delivered', attempts: n, lastError: null })
        return
      }
      const last = n === attempts || !result.retry
      this.record(id, index, { status: last ? 'failed' : 'pending', attempts: n, lastError: result.error })
      if (last) {
        this.opts.logger.warn({ notifier: t.name, approval: id, error: result.error, attempts: n }, 'approval notification failed')
        return
      }
      const backoff = Math.min(cap, base * 2 ** (n - 1))
      const delay = result.retryAfterMs !== undefined ? Math.min(cap, result.retryAfterMs) : Math.floor(Math.random() * backoff) + 1
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.timers.delete(timer)
          resolve()
        }, delay)
        timer.unref()
        this.timers.add(timer)
        this.controller.signal.addEventListener(
          'abort',
          () => {
            clearTimeout(timer)
            this.timers.delete(timer)
            resolve()
          },
          { once: true },
        )
      })
    }
  }

  private async attempt(t: NotifierTarget, msg: ApprovalMessage): Promise<{ ok: true } | { ok: false; retry: boolean; error: string; retryAfterMs?: number }> {
    let body: string
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (t.type === 'slack') body = JSON.stringify(buildSlackMessage(msg))
    else if (t.type === 'teams') body = JSON.stringify(buildTeamsMessage(msg))
    else {
      body = JSON.stringify(buildWebhookBody(msg, `${this.opts.issuer.replace(/\/$/, '')}/integrations/webhook/decisions`))
      headers['aegis-signature'] = signWebhook(t.secret!, body, Math.floor(this.opts.clock.now() / 1000))
      headers['aegis-event'] = 'approval.requested'
    }
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.opts.timeoutMs ?? 10000)])
    try {
      const res = await fetch(t.url, { method: 'POST', headers, body, signal, redirect: 'error' })
      await res.body?.cancel().catch(() => {})
      if (res.ok) return { ok: true }
      const retry = res.status === 408 || res.status === 429 || res.status >= 500
      const ra = Number(res.headers.get('retry-after'))
      return { ok: false, retry, error: `HTTP ${res.status}`, ...(res.status === 429 && Number.isFinite(ra) && ra >= 0 ? { retryAfterMs: ra * 1000 } : {}) }
    } catch (err) {
      // Never the URL: Slack and Teams webhook URLs carry their credential.
      const e = err as Error & { cause?: { code?: string } }
      const why =
        e.name === 'TimeoutError'
          ? 'timed out'
          : e.name === 'AbortError'
            ? 'aborted'
            : e.cause?.code
              ? `connection failed (${e.cause.code})`
              : 'connection failed'
      return { ok: false, retry: true, error: why }
    }
  }
}
