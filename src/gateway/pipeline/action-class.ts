import type { PolicyResult } from '../../policy/types.js'

// "read" = the tool's last name segment (after the last `.`, `/` or `:`) starts with one of these verbs.
const READ_VERB = /^(?:read|get|list|search)/i

/**
 * Whether a call is a read, for the Redis-outage rule
 * (`gateway.redisOutageReads`). A policy's `@action_class("read"|"write")`
 * (PolicyResult.actionClass) wins; otherwise a tool whose last name segment
 * starts with read, get, list or search (`crm.read`, `files.list_all`,
 * `kb/search`) is a read. High-risk actions are never treated as reads.
 */
export function isReadAction(tool: string, result: PolicyResult): boolean {
  if (result.risk === 'high') return false
  if (result.actionClass !== undefined) return result.actionClass === 'read'
  const cut = Math.max(tool.lastIndexOf('.'), tool.lastIndexOf('/'), tool.lastIndexOf(':'))
  return READ_VERB.test(cut < 0 ? tool : tool.slice(cut + 1))
}
