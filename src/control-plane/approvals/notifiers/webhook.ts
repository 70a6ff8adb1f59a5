/**
 * Generic webhook notifier and its signature scheme, shaped like Stripe's:
 * header `Aegis-Signature: t=<epoch seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`.
 * The receiver recomputes the HMAC over the raw body, compares in constant
 * time and refuses timestamps older than five minutes. The same scheme signs
 * decisions sent back to `POST /integrations/webhook/decisions`.
 */
import { createHmac } from 'node:crypto'
import { constantTimeEqual } from '../../../lib/hash.js'
import type { ApprovalMessage } from './message.js'

/** Seconds a signed timestamp stays acceptable, either direction. */
export const SIGNATURE_TOLERANCE_SECONDS = 300

/** `t=…,v1=…` for `body` at `t` (epoch seconds). */
export function signWebhook(secret: string, body: string, t: number): string {
  const v1 = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')
  return `t=${t},v1=${v1}`
}

/**
 * Checks an `Aegis-Signature` header against any of `secrets`. Returns the
 * index of the matching secret, or a reason. Every candidate is compared in
 * constant time, and all are tried, so timing does not tell which matched.
 */
export function verifyWebhookSignature(
  header: string | undefined,
  body: string,
  secrets: readonly string[],
  nowSeconds: number,
): { ok: true; index: number } | { ok: false; why: string } {
  if (typeof header !== 'string' || header.length > 1000) return { ok: false, why: 'missing signature' }
  let t: number | undefined
  const sigs: string[] = []
  for (const part of header.split(',')) {
    const [k, v] = part.trim().split('=', 2)
    if (k === 't' && v && /^\d{1,12}$/.test(v)) t = Number(v)
    else if (k === 'v1' && v && /^[0-9a-f]{64}$/.test(v)) sigs.push(v)
  }
  if (t === undefined || sigs.length === 0) return { ok: false, why: 'malformed signature' }
  if (Math.abs(nowSeconds - t) > SIGNATURE_TOLERANCE_SECONDS) return { ok: false, why: 'signature timestamp outside five minutes' }
  let index = -1
  secrets.forEach((secret, i) => {
    const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')
    for (const s of sigs) if (constantTimeEqual(expected, s) && index === -1) index = i
  })
  return index >= 0 ? { ok: true, index } : { ok: false, why: 'bad signature' }
}

/** The JSON body of an `approval.requested` webhook delivery. */
export function buildWebhookBody(m: ApprovalMessage, decisionUrl: string): Record<string, unknown> {
  const a = m.approval
  return {
    type: 'approval.requested',
    approval: {
      id: a.id,
      tenant: a.tenant,
      agent_id: a.agentId,
      tool: a.tool,
      params: m.maskedParams,
      params_hash: a.paramsHash,
      resource: a.resource,
      policy_id: a.policyId,
      policy_version: a.policyVersion,
      group: a.group,
      require_console: a.requireConsole,
      created_at: Math.floor(a.createdAt / 1000),
      expires_at: Math.floor(a.expiresAt / 1000),
      console_url: m.consoleUrl,
    },
    decision_url: decisionUrl,
  }
}
