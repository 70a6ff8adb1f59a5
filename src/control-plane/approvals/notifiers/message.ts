/** What every notifier renders: the request, its masked parameters, where to act. */
import type { Approval } from '../../../store/types.js'

export interface ApprovalMessage {
  approval: Approval
  /** Parameters with sanitized and secret-looking fields masked. */
  maskedParams: Record<string, unknown>
  /** Console page of the request (admin login). */
  consoleUrl: string
}

/** Console page of one request (`/console/approvals/{id}`: after login, approved or denied in one click; MCP clients open the same page). */
export function consoleUrlFor(issuer: string, id: string): string {
  return `${issuer.replace(/\/$/, '')}/console/approvals/${encodeURIComponent(id)}`
}
