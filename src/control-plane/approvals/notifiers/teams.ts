/**
 * Microsoft Teams "Workflows" webhook message: an Adaptive Card 1.4 wrapped
 * in a message activity, the envelope the "When a Teams webhook request is
 * received" trigger posts as is:
 * `{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","contentUrl":null,"content":{…}}]}`.
 *
 * The card has the action summary, a FactSet of masked parameters, and one
 * `Action.OpenUrl` to the request in the Aegis console. There are no
 * Approve/Deny buttons: a Workflows webhook cannot route `Action.Submit` /
 * `Action.Execute` back to Aegis without a registered bot, so Teams users
 * decide in the console (admin login), which is also where a linked Teams
 * identity would be checked.
 */
import { paramFields } from '../mask.js'
import type { ApprovalMessage } from './message.js'

/** Adaptive Card text supports a Markdown subset; neutralize its syntax in untrusted values. */
export function teamsEscape(s: string): string {
  return s.replace(/[\\`*_[\]()#+\-!<>~|]/g, (c) => `\\${c}`)
}

/** The JSON body posted to a Teams workflow webhook. */
export function buildTeamsMessage(m: ApprovalMessage): Record<string, unknown> {
  const a = m.approval
  const { fields, omitted } = paramFields(m.maskedParams, 20, 500)
  const facts = [
    { title: 'Agent', value: teamsEscape(a.agentId) },
    { title: 'Tenant', value: teamsEscape(a.tenant) },
    { title: 'Tool', value: teamsEscape(a.tool) },
    ...(a.resource ? [{ title: 'Resource', value: teamsEscape(a.resource.slice(0, 300)) }] : []),
    { title: 'Approver group', value: teamsEscape(a.group) },
    { title: 'Policy', value: `${teamsEscape(a.policyId)} (version ${teamsEscape(a.policyVersion)})` },
    { title: 'Expires', value: new Date(a.expiresAt).toISOString() },
  ]
  const body: Record<string, unknown>[] = [
    { type: 'TextBlock', text: 'Approval needed', weight: 'Bolder', size: 'Medium', wrap: true },
    { type: 'TextBlock', text: `${teamsEscape(a.agentId)} wants to call ${teamsEscape(a.tool)}.`, wrap: true },
    { type: 'FactSet', facts },
  ]
  if (fields.length > 0) {
    body.push({ type: 'TextBlock', text: 'Parameters', weight: 'Bolder', wrap: true, spacing: 'Medium' })
    body.push({ type: 'FactSet', facts: fields.map(([k, v]) => ({ title: teamsEscape(k), value: teamsEscape(v) })) })
  }
  if (omitted > 0) body.push({ type: 'TextBlock', text: `${omitted} more parameter(s) in the console.`, isSubtle: true, wrap: true })
  body.push({
    type: 'TextBlock',
    text: `Request ${a.id}. Decide in the Aegis console${a.requireConsole ? ' (required by policy)' : ''}.`,
    isSubtle: true,
    wrap: true,
  })
  return {
    type: 'message',
    attachments: [
      {
        contentType: 'application/vnd.microsoft.card.adaptive',
        contentUrl: null,
        content: {
          $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
          type: 'AdaptiveCard',
          version: '1.4',
          body,
          actions: [{ type: 'Action.OpenUrl', title: 'Review in Aegis console', url: m.consoleUrl }],
        },
      },
    ],
  }
}
