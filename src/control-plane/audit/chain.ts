import { hash as oneShotHash } from 'node:crypto'
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
  return sha256b64url(
    canonicalJson({
      chain_id: e.chainId,
      chain_seq: e.chainSeq,
      ts: e.ts,
      type: e.type,
      tenant: e.tenant,
      actor: e.actor,
      subject: e.subject,
      data: e.data,
      prev_hash: e.prevHash,
    }),
  )
}

/**
 * Wire (snake_case) form of an event: admin API, export. The time keeps its
 * milliseconds, so it names its unit: `ts_ms` is the `ts` the hash covers.
 */
export function eventToWire(e: AuditEvent): Record<string, unknown> {
  return {
    id: e.id,
    chain_id: e.chainId,
    chain_seq: e.chainSeq,
    ts_ms: e.ts,
    type: e.type,
    tenant: e.tenant,
    actor: e.actor,
    subject: e.subject,
    data: e.data,
    prev_hash: e.prevHash,
    hash: e.hash,
  }
}

/** Wire (snake_case) form of a checkpoint: `ts_ms` is the `ts` its signature covers. */
export function checkpointToWire(c: AuditCheckpoint): Record<string, unknown> {
  return { chain_id: c.chainId, chain_seq: c.chainSeq, head_hash: c.headHash, ts_ms: c.ts, kid: c.kid, signature: c.signature }
}

// String.prototype.isWellFormed / toWellFormed (ES2024, in Node 20) are not in the ES2023 lib types.
type WellFormedString = string & { isWellFormed(): boolean; toWellFormed(): string }

/** `s` with each lone surrogate replaced by U+FFFD. */
function wellFormed(s: string): string {
  return (s as WellFormedString).isWellFormed() ? s : (s as WellFormedString).toWellFormed()
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

/** Event data as the writer queues it: the normalized object (what the store keeps) and its RFC 8785 text. */
export interface PreparedData {
  data: Record<string, unknown>
  /** `canonicalJson(data)`, byte for byte. */
  canonical: string
}

const FAST_MAX_DEPTH = 32

/**
 * A deep copy of `v` equal to the JSON round trip normalizeData does, but
 * with every object's members inserted in RFC 8785 order (sorted by UTF-16
 * code units), so that JSON.stringify of the copy is its canonical text.
 * Returns undefined when `v` holds anything the round trip would change
 * other than by dropping undefined members, turning -0 into 0 and replacing
 * lone surrogates in string values (toJSON, Dates, class instances,
 * non-finite numbers, undefined in arrays, functions), or anything
 * JSON.stringify would not emit in insertion order or the `canonicalize`
 * package would refuse (keys starting with a digit, which objects enumerate
 * first when they are array indices; lone surrogates in keys; `__proto__`;
 * deep nesting): the caller then takes the slow, obviously-equal path.
 */
function sortedPlainCopy(v: unknown, depth: number): unknown {
  switch (typeof v) {
    case 'string':
      return (v as WellFormedString).isWellFormed() ? v : (v as WellFormedString).toWellFormed()
    case 'number':
      return Number.isFinite(v) ? (v === 0 ? 0 : v) : undefined
    case 'boolean':
      return v
    case 'object': {
      if (v === null) return null
      if (depth >= FAST_MAX_DEPTH) return undefined
      const proto = Object.getPrototypeOf(v) as unknown
      if (Array.isArray(v)) {
        if (proto !== Array.prototype) return undefined
        const out: unknown[] = new Array<unknown>(v.length)
        for (let i = 0; i < v.length; i++) {
          const c = sortedPlainCopy(v[i], depth + 1)
          if (c === undefined) return undefined
          out[i] = c
        }
        return out
      }
      if (proto !== Object.prototype && proto !== null) return undefined
      const o = v as Record<string, unknown>
      // Array.prototype.sort without a comparator orders by UTF-16 code units, as RFC 8785 §3.2.3 requires.
      const keys = Object.keys(o).sort()
      const out: Record<string, unknown> = {}
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i]!
        const c0 = k.charCodeAt(0)
        if ((c0 >= 0x30 && c0 <= 0x39) || k === '__proto__' || !(k as WellFormedString).isWellFormed()) return undefined
        const x = o[k]
        if (x === undefined) continue
        const c = sortedPlainCopy(x, depth + 1)
        if (c === undefined) return undefined
        out[k] = c
      }
      return out
    }
    default:
      return undefined
  }
}

/**
 * normalizeData plus the canonical text of the result, in one cheap walk for
 * the plain data every caller passes; anything else goes through
 * normalizeData and the `canonicalize` package. Throws when the data has no
 * canonical form (e.g. a lone surrogate in a key).
 *
 * Hand-written because the issuance path pays for it on every token: the
 * JSON round trip with a reviver and the package's generic walk cost several
 * times more, and the bytes are the same (tested against the package).
 */
export function prepareData(data: Record<string, unknown> | undefined): PreparedData {
  if (data === undefined) return { data: {}, canonical: '{}' }
  const fast = sortedPlainCopy(data, 0)
  if (fast !== undefined && fast !== null && typeof fast === 'object' && !Array.isArray(fast)) {
    // Only well-formed strings, finite numbers, booleans, null, arrays and
    // objects in canonical member order remain, and JSON.stringify writes
    // each of them exactly as the `canonicalize` package does.
    const obj = fast as Record<string, unknown>
    return { data: obj, canonical: JSON.stringify(obj) }
  }
  const slow = normalizeData(data)
  return { data: slow, canonical: canonicalJson(slow) }
}

function textOrNull(s: string | null): string {
  return s === null ? 'null' : JSON.stringify(s)
}

/**
 * eventHash(e) for an event whose data's canonical text is already known
 * (PreparedData.canonical) and whose text fields were normalized by
 * normalizeText: the top-level members are written in their fixed RFC 8785
 * order instead of being sorted and re-walked. Falls back to eventHash when a
 * field is outside what that shortcut covers.
 */
export function eventHashPrepared(e: ChainedFields, canonicalData: string): string {
  if (
    !Number.isFinite(e.chainSeq) ||
    !Number.isFinite(e.ts) ||
    !(e.chainId as WellFormedString).isWellFormed() ||
    !(e.type as WellFormedString).isWellFormed() ||
    !(e.prevHash as WellFormedString).isWellFormed() ||
    (e.tenant !== null && !(e.tenant as WellFormedString).isWellFormed()) ||
    (e.actor !== null && !(e.actor as WellFormedString).isWellFormed()) ||
    (e.subject !== null && !(e.subject as WellFormedString).isWellFormed())
  ) {
    return eventHash(e)
  }
  // Member order: actor, chain_id, chain_seq, data, prev_hash, subject, tenant, ts, type (sorted by code unit).
  const text =
    '{"actor":' +
    textOrNull(e.actor) +
    ',"chain_id":' +
    JSON.stringify(e.chainId) +
    ',"chain_seq":' +
    String(e.chainSeq) +
    ',"data":' +
    canonicalData +
    ',"prev_hash":' +
    JSON.stringify(e.prevHash) +
    ',"subject":' +
    textOrNull(e.subject) +
    ',"tenant":' +
    textOrNull(e.tenant) +
    ',"ts":' +
    String(e.ts) +
    ',"type":' +
    JSON.stringify(e.type) +
    '}'
  return oneShotHash('sha256', text, 'base64url')
}
