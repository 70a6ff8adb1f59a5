/**
 * One ApprovalService per control plane (per ControlPlaneDeps), shared by the
 * admin routes, the agent's status endpoint and the chat/webhook callbacks,
 * without widening ControlPlaneDeps.
 */
import type { ControlPlaneDeps } from '../deps.js'
import { NotificationDispatcher, parseNotifiers, type DispatcherOptions } from './notifiers/dispatcher.js'
import { ApprovalService } from './service.js'

const services = new WeakMap<ControlPlaneDeps, ApprovalService>()
const dispatchers = new WeakMap<ApprovalService, NotificationDispatcher>()

export interface CreateApprovalServiceOptions {
  /** Expiry sweep period (ms). Default 5000. */
  sweepIntervalMs?: number
  /** Delivery retry tuning (tests shorten it). */
  delivery?: Pick<DispatcherOptions, 'attempts' | 'baseDelayMs' | 'maxDelayMs' | 'timeoutMs'>
}

/**
 * Builds the service with its notification dispatcher from configuration.
 * Throws (a plain Error naming each problem) for invalid `approvals.notifiers`
 * or `approvals.budgets`. Does not start the sweeper.
 */
export function createApprovalService(deps: ControlPlaneDeps, opts: CreateApprovalServiceOptions = {}): ApprovalService {
  const notifiers = parseNotifiers(deps.config.approvals.notifiers, deps.config.approvals.webhookSecret)
  const dispatcher = new NotificationDispatcher({
    notifiers,
    store: deps.store,
    issuer: deps.config.issuer,
    clock: deps.clock,
    logger: deps.logger,
    ...opts.delivery,
  })
  const service = new ApprovalService({
    config: deps.config,
    store: deps.store,
    keys: deps.keys,
    audit: deps.audit,
    clock: deps.clock,
    logger: deps.logger,
    metrics: deps.metrics,
    notifier: dispatcher,
    ...(opts.sweepIntervalMs !== undefined ? { sweepIntervalMs: opts.sweepIntervalMs } : {}),
  })
  dispatchers.set(service, dispatcher)
  return service
}

/** The control plane's service: created (and its sweeper started) on first use. */
export function approvalServiceFor(deps: ControlPlaneDeps): ApprovalService {
  let s = services.get(deps)
  if (!s) {
    s = createApprovalService(deps)
    s.start()
    services.set(deps, s)
  }
  return s
}

/** Installs a specific service for these deps (tests with fast retries); starts its sweeper. */
export function installApprovalService(deps: ControlPlaneDeps, service: ApprovalService): void {
  services.set(deps, service)
  service.start()
}

/** The dispatcher of a service built by {@link createApprovalService} (admin views, tests). */
export function dispatcherOf(service: ApprovalService): NotificationDispatcher | undefined {
  return dispatchers.get(service)
}
