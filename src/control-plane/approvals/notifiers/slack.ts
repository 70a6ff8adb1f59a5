/**
 * Slack incoming-webhook message with Block Kit (https://docs.slack.dev/reference/block-kit):
 * a `header` block, a `section` summarizing the action, a `section` with up
 * to ten parameter `fields`, a `context` block (policy, group, expiry) and an
 * `actions` block with Approve (`style: primary`) and Deny (`style: danger`)
 * buttons whose `action_id`s are {@link SLACK_APPROVE_ACTION} /
 * {@link SLACK_DENY_ACTION} and whose `value` is the approval id. A click
 * comes back as a `block_actions` interaction payload (callbacks.ts). The
 * top-level `text` is the notification fallback.
 *
 * Limits honoured (Block Kit reference): header text ≤ 150 chars, section
 * text ≤ 3000, ≤ 10 fields of ≤ 2000 chars, button text ≤ 75, value ≤ 2000.
 * Untrusted values are escaped (`&`, `<`, `>`) so an agent's parameters can
 * neither mention `<!channel>` nor forge links.
 */
import { paramFields } from '../mask.js'
import type { ApprovalMessage } from './message.js'

export const SLACK_APPROVE_ACTION = 'aegis_approve'
export const SLACK_DENY_ACTION = 'aegis_deny'
export const SLACK_BLOCK_ID = 'aegis_approval_actions'

/** Slack mrkdwn escaping of the three control characters (Slack "Formatting text"). */
export function slackEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

function clip(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`
}

/** The JSON body posted to a Slack incoming webhook. */
export function buildSlackMessage(m: ApprovalMessage): Record<string, unknown> {
  const a = m.approval
  const { fields, omitted } = paramFields(m.maskedParams, 10, 1500)
  const expires = Math.floor(a.expiresAt / 1000)
  const summary =
    `*${slackEscape(a.agentId)}* (tenant *${slackEscape(a.tenant)}*) wants to call \`${slackEscape(a.tool)}\`` +
    (a.resource ? ` on \`${slackEscape(clip(a.resource, 300))}\`` : '') +
    `.\nApprover group: *${slackEscape(a.group)}*` +
    (a.requireConsole ? '\n:lock: This request can only be decided in the Aegis console.' : '')
  const blocks: Record<string, unknown>[] = [
    { type: 'header', text: { type: 'plain_text', text: clip(`Approval needed: ${a.tool}`, 150), emoji: true } },
    { type: 'section', text: { type: 'mrkdwn', text: clip(summary, 3000) } },
  ]
  if (fields.length > 0) {
    blocks.push({ type: 'section', fields: fields.map(([k, v]) => ({ type: 'mrkdwn', text: clip(`*${slackEscape(k)}*\n${slackEscape(v)}`, 2000) })) })
  }
  blocks.push({
    type: 'context',
    elements: [
      {
        type: 'mrkdwn',
        text: clip(
          `Policy ${slackEscape(a.policyId)} · version ${slackEscape(a.policyVersion)} · request ${a.id} · expires ` +
            `<!date^${expires}^{date_short_pretty} {time}|${new Date(a.expiresAt).toISOString()}>` +
            (omitted > 0 ? ` · ${omitted} more parameter(s) in the console` : ''),
          3000,
        ),
      },
    ],
  })
  const elements: Record<string, unknown>[] = []
  if (!a.requireConsole) {
    elements.push(
      { type: 'button', action_id: SLACK_APPROVE_ACTION, text: { type: 'plain_text', text: 'Approve' }, style: 'primary', value: a.id },
      { type: 'button', action_id: SLACK_DENY_ACTION, text: { type: 'plain_text', text: 'Deny' }, style: 'danger', value: a.id },
    )
  }
  elements.push({ type: 'button', action_id: 'aegis_open_console', text: { type: 'plain_text', text: 'Open in console' }, url: m.consoleUrl })
  blocks.push({ type: 'actions', block_id: SLACK_BLOCK_ID, elements })
  return { text: clip(`Approval needed: ${slackEscape(a.agentId)} wants to call ${slackEscape(a.tool)} (tenant ${slackEscape(a.tenant)})`, 3000), blocks }
}
