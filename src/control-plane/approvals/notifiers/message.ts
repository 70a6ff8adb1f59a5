/** What every notifier renders: the request, its masked parameters, where to act. */
import type { Approval } from '../../../store/types.js'

export interface ApprovalMessage {
  approval: Approval
  /** Parameters with sanitized and secret-looking fields masked. */
  maskedParams: Record<string, unknown>
  /** Console page of the request (admin login). */
  consoleUrl: string
}

/** Console page of a request. The console serves `/console`; the fragment names the request. */
export function consoleUrlFor(issuer: string, id: string): string {
  return `${issuer.replace(/\/$/, '')}/console/#/approvals/${encodeURIComponent(id)}`
}
