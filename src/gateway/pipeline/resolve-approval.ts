import type { ApprovalContext, ApprovalHook, ApprovalResolution } from '../deps.js'

/**
 * Step 6 (docs/reference.md "Gateway", "Approvals"): an enforced `approval_needed`
 * goes to the approval hook, which may open an approval request (answered
 * with its id and status URL) or accept a valid one-time override. With the
 * default hook the decision is returned as is, without an approval id.
 */
export function resolveApproval(hook: ApprovalHook, ctx: ApprovalContext): ApprovalResolution | null | Promise<ApprovalResolution | null> {
  return hook.resolve(ctx)
}

/** The hook used until approvals land: no approval request is opened. */
export const noApprovals: ApprovalHook = {
  resolve: () => null,
}
