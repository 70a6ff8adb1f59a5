/**
 * Decisions coming back from chat and webhooks, registered at the control
 * plane's root:
 *
 * - `POST /integrations/slack/interactions`: Slack's interactivity request
 *   (form body with a `payload` JSON field). Verified per Slack's "Verifying
 *   requests from Slack": `X-Slack-Signature` = `v0=` + hex
 *   HMAC-SHA256(signing secret, `v0:{X-Slack-Request-Timestamp}:{raw body}`),
 *   timestamp within five minutes, compared in constant time. Only
 *   `block_actions` clicks on our Approve/Deny buttons count; the clicking
 *   user (`team.id`/`user.id`) must be linked to an Aegis approver as
 *   `slack:<team_id>/<user_id>`.
 * - `POST /integrations/webhook/decisions`: JSON
 *   `{"approval_id","decision":"approve"|"deny","approver","reason"?}` signed
 *   like our outgoing webhooks (`Aegis-Signature: t=…,v1=…`, HMAC-SHA256 over
 *   `t + "." + raw body`) with `approvals.webhookSecret` or the secret of a
 *   webhook notifier of the request's group; `approver` must be linked as
 *   `webhook:<approver>`.
 *
 * Both need the exact bytes that were signed, so they live in an
 * encapsulated fastify context whose parsers keep the raw string.
 */
import type { FastifyInstance } from 'fastify'
import { createHmac } from 'node:crypto'
import { AegisError, InvalidRequest, NotFound } from '../../errors.js'
import { constantTimeEqual } from '../../lib/hash.js'
import { jsonDepth } from '../../lib/json-limits.js'
import type { ControlPlaneDeps } from '../deps.js'
import { parseNotifiers } from './notifiers/dispatcher.js'
import { SLACK_APPROVE_ACTION, SLACK_DENY_ACTION } from './notifiers/slack.js'
import { SIGNATURE_TOLERANCE_SECONDS, verifyWebhookSignature } from './notifiers/webhook.js'
import { approvalServiceFor } from './registry.js'

/**
 * Checks a Slack request signature (v0). Returns null when valid, else why.
 * `nowSeconds` epoch seconds.
 */
export function verifySlackSignature(secret: string, headers: { timestamp: unknown; signature: unknown }, rawBody: string, nowSeconds: number): string | null {
  const ts = headers.timestamp
  const sig = headers.signature
  if (typeof ts !== 'string' || !/^\d{1,12}$/.test(ts)) return 'missing or malformed X-Slack-Request-Timestamp'
  if (typeof sig !== 'string' || !/^v0=[0-9a-f]{64}$/.test(sig)) return 'missing or malformed X-Slack-Signature'
  // Checked before the HMAC so a captured request cannot be replayed later (Slack: five minutes).
  if (Math.abs(nowSeconds - Number(ts)) > SIGNATURE_TOLERANCE_SECONDS) return 'request timestamp outside five minutes'
  const expected = `v0=${createHmac('sha256', secret).update(`v0:${ts}:${rawBody}`).digest('hex')}`
  return constantTimeEqual(expected, sig) ? null : 'bad signature'
}

function unauthorized(): AegisError {
  // One flat message: never which part of the signature check failed.
  return new AegisError('unauthorized', 'request signature not valid')
}

/** Registers the Slack and webhook decision callbacks. */
export async function approvalCallbackRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  await app.register(async (ctx) => {
    const bodyLimit = deps.config.limits.bodyBytes
    ctx.removeAllContentTypeParsers()
    const keepRaw = (_req: unknown, body: string | Buffer, done: (err: Error | null, body?: unknown) => void) =>
      done(null, typeof body === 'string' ? body : body.toString('utf8'))
    ctx.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit }, keepRaw)
    ctx.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, keepRaw)

    ctx.post('/integrations/slack/interactions', async (request, reply) => {
      const secret = deps.config.approvals.slackSigningSecret
      if (!secret) throw new NotFound('Slack integration is not configured (approvals.slackSigningSecret)')
      const raw = typeof request.body === 'string' ? request.body : ''
      const now = Math.floor(deps.clock.now() / 1000)
      const why = verifySlackSignature(
        secret,
        { timestamp: request.headers['x-slack-request-timestamp'], signature: request.headers['x-slack-signature'] },
        raw,
        now,
      )
      if (why) {
        request.log.info({ why }, 'slack interaction refused')
        await deps.audit.append({ type: 'approval.callback_refused', actor: 'slack', data: { channel: 'slack', why } })
        throw unauthorized()
      }
      const payloadText = new URLSearchParams(raw).get('payload')
      if (!payloadText) throw new InvalidRequest('payload is required')
      let payload: Record<string, unknown>
      try {
        payload = JSON.parse(payloadText) as Record<string, unknown>
      } catch {
        throw new InvalidRequest('payload is not JSON')
      }
      if (payload === null || typeof payload !== 'object' || jsonDepth(payload, deps.config.limits.jsonDepth) > deps.config.limits.jsonDepth)
        throw new InvalidRequest('payload not accepted')
      if (payload.type !== 'block_actions') return reply.code(200).send({ ok: true, ignored: `interaction type ${String(payload.type).slice(0, 40)}` })
      const actions = Array.isArray(payload.actions) ? (payload.actions as Array<Record<string, unknown>>) : []
      const action = actions.find((a) => a && (a.action_id === SLACK_APPROVE_ACTION || a.action_id === SLACK_DENY_ACTION))
      if (!action) return reply.code(200).send({ ok: true, ignored: 'not an approval button' })
      const user = (payload.user ?? {}) as Record<string, unknown>
      const team = (payload.team ?? {}) as Record<string, unknown>
      const teamId = typeof team.id === 'string' ? team.id : typeof user.team_id === 'string' ? user.team_id : undefined
      const userId = typeof user.id === 'string' ? user.id : undefined
      if (!teamId || !userId || !/^[A-Z0-9]{1,40}$/i.test(teamId) || !/^[A-Z0-9]{1,40}$/i.test(userId))
        throw new InvalidRequest('payload names no Slack team and user')
      const id = typeof action.value === 'string' ? action.value : ''
      const decision = action.action_id === SLACK_APPROVE_ACTION ? 'approve' : 'deny'
      const name = typeof user.username === 'string' ? user.username.slice(0, 80) : userId
      const { approval } = await approvalServiceFor(deps).decide(id, {
        decision,
        by: { kind: 'linked', identity: `slack:${teamId}/${userId}` },
        reason: `${decision === 'approve' ? 'approved' : 'denied'} in Slack by ${name}`,
        via: 'slack',
      })
      return reply.code(200).send({ response_type: 'ephemeral', replace_original: false, text: `Request ${approval.id} ${approval.status}.` })
    })

    ctx.post('/integrations/webhook/decisions', async (request, reply) => {
      const raw = typeof request.body === 'string' ? request.body : ''
      let body: Record<string, unknown> | null = null
      try {
        const parsed = JSON.parse(raw) as unknown
        if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) && jsonDepth(parsed, 4) <= 4) body = parsed as Record<string, unknown>
      } catch {
        body = null
      }
      const service = approvalServiceFor(deps)
      const id = body && typeof body.approval_id === 'string' && body.approval_id.length <= 100 ? body.approval_id : ''
      const approval = id ? await service.get(id).catch(() => null) : null
      const secrets: string[] = []
      if (deps.config.approvals.webhookSecret) secrets.push(deps.config.approvals.webhookSecret)
      if (approval) {
        const notifiers = parseNotifiers(deps.config.approvals.notifiers, deps.config.approvals.webhookSecret)
        for (const t of [...(notifiers.get(approval.group) ?? []), ...(notifiers.get('*') ?? [])])
          if (t.secret && !secrets.includes(t.secret)) secrets.push(t.secret)
      }
      if (secrets.length === 0) throw new NotFound('webhook decisions are not configured (approvals.webhookSecret or a webhook notifier)')
      const sig = request.headers['aegis-signature']
      const v = verifyWebhookSignature(typeof sig === 'string' ? sig : undefined, raw, secrets, Math.floor(deps.clock.now() / 1000))
      if (!v.ok) {
        request.log.info({ why: v.why }, 'webhook decision refused')
        await deps.audit.append({
          type: 'approval.callback_refused',
          actor: 'webhook',
          tenant: approval?.tenant ?? null,
          subject: approval?.id ?? null,
          data: { channel: 'webhook', why: v.why },
        })
        throw unauthorized()
      }
      if (!body) throw new InvalidRequest('body must be a JSON object')
      if (!approval) throw new NotFound('no such approval request')
      const decision = body.decision
      if (decision !== 'approve' && decision !== 'deny') throw new InvalidRequest('decision must be "approve" or "deny"')
      const approver = body.approver
      if (typeof approver !== 'string' || approver.length === 0 || approver.length > 200 || /\s/.test(approver))
        throw new InvalidRequest('approver must name the deciding person (linked as webhook:<approver>)')
      const reason = body.reason === undefined || body.reason === null ? null : String(body.reason)
      const { approval: decided } = await service.decide(id, { decision, by: { kind: 'linked', identity: `webhook:${approver}` }, reason, via: 'webhook' })
      return reply.code(200).send({ id: decided.id, status: decided.status })
    })
  })
}
