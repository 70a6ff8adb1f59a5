import { canonicalJson } from '../../lib/canonical-json.js'
import { sha256b64url } from '../../lib/hash.js'
import type { AuditCheckpoint, AuditEvent } from '../../store/types.js'

/** prev_hash of the first event of every chain: base64url of 32 zero bytes. */
export const GENESIS_HASH = Buffer.alloc(32).toString('base64url')

/** JOSE `typ` of a signed chain-head checkpoint. */
export const CHECKPOINT_TYP = 'aegis-checkpoint+jwt'

/** The fields an event's hash covers, as they are hashed. */
export interface ChainedFields {
  chainId: string
  chainSeq: number
  ts: number
  type: string
  tenant: string | null
  actor: string | null
  subject: string | null
  data: Record<string, unknown>
  prevHash: string
}

/**
 * `hash` of an audit event: base64url SHA-256 of the RFC 8785 canonical JSON
 * of {chain_id, chain_seq, ts, type, tenant, actor, subject, data, prev_hash}.
 */
export function eventHash(e: ChainedFields): string {
  return sha256b64url(canonicalJson({
    chain_id: e.chainId,
    chain_seq: e.chainSeq,
    ts: e.ts,
    type: e.type,
    tenant: e.tenant,
    actor: e.actor,
    subject: e.subject,
    data: e.data,
    prev_hash: e.prevHash,
  }))
}

/** Wire (snake_case) form of an event: admin API, export. */
export function eventToWire(e: AuditEvent): Record<string, unknown> {
  return {
    id: e.id,
    chain_id: e.chainId,
    chain_seq: e.chainSeq,
    ts: e.ts,
    type: e.type,
    tenant: e.tenant,
    actor: e.actor,
    subject: e.subject,
    data: e.data,
    prev_hash: e.prevHash,
    hash: e.hash,
  }
}

/** Wire (snake_case) form of a checkpoint. */
export function checkpointToWire(c: AuditCheckpoint): Record<string, unknown> {
  return { chain_id: c.chainId, chain_seq: c.chainSeq, head_hash: c.headHash, ts: c.ts, kid: c.kid, signature: c.signature }
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
const LONE_SURROGATES = new RegExp(LONE_SURROGATE.source, 'g')

function wellFormed(s: string): string {
  return LONE_SURROGATE.test(s) ? s.replace(LONE_SURROGATES, '\uFFFD') : s
}

/**
 * The event data as it will read back from any store: a JSON round trip
 * (drops undefined, turns Dates into strings) with lone surrogates replaced,
 * since RFC 8785 cannot encode them and attacker-supplied text (a client_id
 * in auth.failed) may carry one.
 */
export function normalizeData(data: Record<string, unknown> | undefined): Record<string, unknown> {
  if (data === undefined) return {}
  const parsed = JSON.parse(JSON.stringify(data), (_k, v: unknown) => (typeof v === 'string' ? wellFormed(v) : v)) as unknown
  return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {}
}

/**
 * A nullable text column, normalized like normalizeData; NUL also becomes
 * U+FFFD because PostgreSQL text refuses it, and one attacker-chosen
 * client_id must not fail the whole batch it shares with other callers.
 */
export function normalizeText(s: string | null | undefined): string | null {
  if (s === undefined || s === null) return null
  const w = wellFormed(String(s))
  return w.includes('\u0000') ? w.replaceAll('\u0000', '\uFFFD') : w
}
