/** Human approvals (docs/reference.md "Approvals"). */
import type { FastifyInstance } from 'fastify'
import type { ControlPlaneDeps } from '../deps.js'
import { approvalCallbackRoutes } from './callbacks.js'
import { approvalServiceFor } from './registry.js'
import { approvalStatusRoutes } from './status-route.js'

export {
  ApprovalService,
  type OpenApprovalInput,
  type OpenApprovalResult,
  type DecideInput,
  type Approver,
  type DecisionChannel,
  type ApprovalStatusView,
  type ApprovalNotifier,
  type ApprovalServiceDeps,
} from './service.js'
export { approvalServiceFor, createApprovalService, installApprovalService, dispatcherOf, type CreateApprovalServiceOptions } from './registry.js'
export { mintOverrideToken, overrideClaims, OVERRIDE_TYP, type OverrideClaims } from './override.js'
export { parseBudgets, type ApprovalBudget } from './budgets.js'
export { maskParams, MASK } from './mask.js'
export { approvalJson } from './wire.js'
export { approvalStatusRoutes, MAX_WAIT_SECONDS } from './status-route.js'
export { approvalCallbackRoutes, verifySlackSignature } from './callbacks.js'
export { NotificationDispatcher, parseNotifiers, type NotifierTarget } from './notifiers/dispatcher.js'
export { buildSlackMessage, SLACK_APPROVE_ACTION, SLACK_DENY_ACTION } from './notifiers/slack.js'
export { buildTeamsMessage } from './notifiers/teams.js'
export { buildWebhookBody, signWebhook, verifyWebhookSignature } from './notifiers/webhook.js'

/**
 * Everything approvals serve outside `/admin/v1`, for control-plane/app.ts to
 * register at the root: the agent's `GET /v1/approvals/{id}` and the Slack
 * and webhook decision callbacks. Also starts the service (expiry sweeper)
 * and stops it when the app closes.
 */
export async function approvalPublicRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const service = approvalServiceFor(deps)
  app.addHook('onClose', async () => {
    await service.close()
  })
  await approvalStatusRoutes(app, deps)
  await approvalCallbackRoutes(app, deps)
}
