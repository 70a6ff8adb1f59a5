import { compactVerify, importJWK, type JWK } from 'jose'
import { systemClock, type Clock } from '../../lib/clock.js'
import type { AuditCheckpoint, AuditEvent, Store } from '../../store/types.js'
import { CHECKPOINT_TYP, GENESIS_HASH, checkpointToWire, eventHash, eventToWire } from './chain.js'

/** The first thing wrong with one chain. */
export interface AuditProblem {
  /** Global id of the offending event; null when the event is missing (deleted). */
  id: number | null
  chainId: string
  /** Position of the offending (or missing) event in its chain. */
  chainSeq: number
  reason: string
}

export interface ChainReport {
  chainId: string
  /** Events read. */
  events: number
  /** chain_seq of the last event read (0 when none). */
  headSeq: number
  /** chain_seq covered by the latest signed checkpoint, null when none. */
  checkpointSeq: number | null
  problem: AuditProblem | null
}

/** Outcome of `aegis audit verify` / `verify-export`. */
export interface AuditVerifyReport {
  /** True only when every chain is whole. */
  ok: boolean
  chains: ChainReport[]
  events: number
  checkpoints: number
  /** The first bad event (lowest id among the chains' first problems), null when whole. */
  firstBad: AuditProblem | null
  /** The first problem of every broken chain. */
  problems: AuditProblem[]
}

/** Format name in the export header line. */
export const EXPORT_FORMAT = 'aegis-audit-export/1'

type Jwks = { keys: Record<string, unknown>[] }

/** Checks one chain, event by event, in chain_seq order. */
class ChainChecker {
  private expected = 1
  private prevHash = GENESIS_HASH
  private lastId = Number.NEGATIVE_INFINITY
  private count = 0
  private headSeq = 0
  private hashAtCheckpoint: string | undefined
  problem: AuditProblem | null = null

  constructor(readonly chainId: string, private readonly checkpoint: AuditCheckpoint | undefined) {}

  feed(e: AuditEvent): void {
    this.count += 1
    if (this.problem) return
    const bad = (reason: string): void => { this.problem = { id: e.id, chainId: this.chainId, chainSeq: e.chainSeq, reason } }
    if (e.chainSeq !== this.expected) {
      return bad(e.chainSeq > this.expected
        ? `chain_seq ${this.expected}${e.chainSeq - this.expected > 1 ? `..${e.chainSeq - 1}` : ''} missing before this event (deleted)`
        : `chain_seq ${e.chainSeq} where ${this.expected} was expected (duplicated or reordered)`)
    }
    if (!(e.id > this.lastId)) return bad(`id ${e.id} is not above id ${this.lastId} of chain_seq ${e.chainSeq - 1}: rows reordered`)
    if (eventHash(e) !== e.hash) return bad('hash does not match the event content: event altered')
    if (e.prevHash !== this.prevHash) return bad(`prev_hash does not match the hash of chain_seq ${e.chainSeq - 1}: chain broken (an earlier event was altered, replaced or removed)`)
    if (this.checkpoint && e.chainSeq === this.checkpoint.chainSeq) this.hashAtCheckpoint = e.hash
    this.prevHash = e.hash
    this.lastId = e.id
    this.headSeq = e.chainSeq
    this.expected += 1
  }

  async finish(keys: Map<string, Record<string, unknown>>): Promise<ChainReport> {
    const cp = this.checkpoint
    if (!this.problem && cp) {
      const sigProblem = await checkCheckpointSignature(cp, keys)
      if (sigProblem) this.problem = { id: null, chainId: this.chainId, chainSeq: cp.chainSeq, reason: sigProblem }
      else if (this.headSeq < cp.chainSeq) {
        this.problem = {
          id: null, chainId: this.chainId, chainSeq: this.headSeq + 1,
          reason: `chain_seq ${this.headSeq + 1}..${cp.chainSeq} missing: the signed checkpoint covers up to ${cp.chainSeq} (newest events deleted)`,
        }
      } else if (this.hashAtCheckpoint !== cp.headHash) {
        this.problem = { id: null, chainId: this.chainId, chainSeq: cp.chainSeq, reason: `event at chain_seq ${cp.chainSeq} does not match the signed checkpoint head` }
      }
    }
    return { chainId: this.chainId, events: this.count, headSeq: this.headSeq, checkpointSeq: cp?.chainSeq ?? null, problem: this.problem }
  }
}

/** Verifies a checkpoint's compact JWS against the given public keys; returns what is wrong, or null. */
async function checkCheckpointSignature(cp: AuditCheckpoint, keys: Map<string, Record<string, unknown>>): Promise<string | null> {
  const jwk = keys.get(cp.kid)
  if (!jwk) return `checkpoint at chain_seq ${cp.chainSeq} is signed by unknown kid ${cp.kid}`
  let payload: Record<string, unknown>
  try {
    const key = await importJWK({ ...(jwk as JWK), alg: 'EdDSA' }, 'EdDSA')
    const res = await compactVerify(cp.signature, key, { algorithms: ['EdDSA'] })
    if (res.protectedHeader.typ !== CHECKPOINT_TYP || res.protectedHeader.kid !== cp.kid) return `checkpoint at chain_seq ${cp.chainSeq} has a wrong header`
    payload = JSON.parse(new TextDecoder().decode(res.payload)) as Record<string, unknown>
  } catch {
    return `checkpoint at chain_seq ${cp.chainSeq}: signature does not verify`
  }
  if (payload.chain_id !== cp.chainId || payload.chain_seq !== cp.chainSeq || payload.head_hash !== cp.headHash || payload.ts !== cp.ts) {
    return `checkpoint at chain_seq ${cp.chainSeq} does not match what its signature covers (checkpoint row altered)`
  }
  return null
}

function keyMap(jwks: Jwks): Map<string, Record<string, unknown>> {
  const m = new Map<string, Record<string, unknown>>()
  for (const k of jwks.keys) if (typeof k.kid === 'string') m.set(k.kid, k)
  return m
}

function summarize(chains: ChainReport[], checkpoints: number): AuditVerifyReport {
  const problems = chains.flatMap((c) => (c.problem ? [c.problem] : []))
  const firstBad = [...problems].sort((a, b) => (a.id ?? Number.MAX_SAFE_INTEGER) - (b.id ?? Number.MAX_SAFE_INTEGER))[0] ?? null
  return { ok: problems.length === 0, chains, events: chains.reduce((n, c) => n + c.events, 0), checkpoints, firstBad, problems }
}

async function storedJwks(store: Store): Promise<Jwks> {
  const keys = await store.keys.list()
  return { keys: keys.map((k) => ({ ...k.publicJwk, kid: k.kid, alg: 'EdDSA', use: 'sig' })) }
}

const PAGE = 1000

/**
 * Proves every audit chain in the store whole: chain_seq contiguous from 1,
 * ids increasing with chain_seq, each prev_hash linking to its predecessor,
 * each hash recomputed from the content, and the latest signed checkpoint of
 * each chain verified against the stored public keys, its head present and
 * equal (so deleting the newest events shows). Names each broken chain's
 * first bad event.
 */
export async function verifyAuditStore(store: Store): Promise<AuditVerifyReport> {
  const checkpoints = await store.audit.latestCheckpoints()
  const byChain = new Map(checkpoints.map((c) => [c.chainId, c]))
  const chainIds = [...new Set([...(await store.audit.chains()), ...byChain.keys()])].sort()
  const keys = keyMap(await storedJwks(store))
  const reports: ChainReport[] = []
  for (const chainId of chainIds) {
    const checker = new ChainChecker(chainId, byChain.get(chainId))
    let after = 0
    for (;;) {
      const page = await store.audit.chain(chainId, after, PAGE)
      for (const e of page) checker.feed(e)
      if (page.length < PAGE) break
      after = page[page.length - 1]!.chainSeq
    }
    reports.push(await checker.finish(keys))
  }
  return summarize(reports, checkpoints.length)
}

/**
 * Writes the whole audit log as JSON Lines: a header
 * `{"kind":"header","format","exported_at","jwks"}` with every public key the
 * store ever held (so checkpoints verify offline), then each chain's events
 * `{"kind":"event",…snake_case…}` in chain order, then the latest checkpoint
 * of each chain `{"kind":"checkpoint",…}`. No private material.
 */
export async function exportAudit(store: Store, write: (line: string) => void, opts: { clock?: Clock } = {}): Promise<{ events: number; checkpoints: number }> {
  const clock = opts.clock ?? systemClock
  write(JSON.stringify({ kind: 'header', format: EXPORT_FORMAT, exported_at: clock.now(), jwks: await storedJwks(store) }))
  const checkpoints = await store.audit.latestCheckpoints()
  const chainIds = [...new Set([...(await store.audit.chains()), ...checkpoints.map((c) => c.chainId)])].sort()
  let events = 0
  for (const chainId of chainIds) {
    let after = 0
    for (;;) {
      const page = await store.audit.chain(chainId, after, PAGE)
      for (const e of page) {
        write(JSON.stringify({ kind: 'event', ...eventToWire(e) }))
        events += 1
      }
      if (page.length < PAGE) break
      after = page[page.length - 1]!.chainSeq
    }
  }
  for (const c of checkpoints) write(JSON.stringify({ kind: 'checkpoint', ...checkpointToWire(c) }))
  return { events, checkpoints: checkpoints.length }
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null
}

function eventFromWire(o: Record<string, unknown>): AuditEvent | null {
  const n = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null)
  const id = n(o.id), chainSeq = n(o.chain_seq), ts = n(o.ts)
  const chainId = str(o.chain_id), type = str(o.type), prevHash = str(o.prev_hash), hash = str(o.hash)
  if (id === null || chainSeq === null || ts === null || chainId === null || type === null || prevHash === null || hash === null) return null
  const data = o.data !== null && typeof o.data === 'object' && !Array.isArray(o.data) ? (o.data as Record<string, unknown>) : null
  if (!data) return null
  return { id, chainId, chainSeq, ts, type, tenant: str(o.tenant), actor: str(o.actor), subject: str(o.subject), data, prevHash, hash }
}

/**
 * Verifies an export offline with public keys only: the same checks as
 * verifyAuditStore. `jwks` (e.g. kept from the live server) overrides the
 * file's header, so a forger cannot bring their own keys; without it the
 * header's keys are used. Lines that are not valid export records are
 * reported as problems.
 */
export async function verifyAuditExport(lines: string[], jwks?: Jwks): Promise<AuditVerifyReport> {
  let header: Record<string, unknown> | null = null
  const checkers = new Map<string, ChainChecker>()
  const events: Array<AuditEvent> = []
  const checkpoints = new Map<string, AuditCheckpoint>()
  const formatProblems: AuditProblem[] = []
  lines.forEach((line, i) => {
    if (line.trim() === '') return
    let o: Record<string, unknown>
    try {
      o = JSON.parse(line) as Record<string, unknown>
      if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new Error('not an object')
    } catch {
      formatProblems.push({ id: null, chainId: '', chainSeq: 0, reason: `line ${i + 1} is not a JSON object` })
      return
    }
    if (o.kind === 'header') {
      if (header) formatProblems.push({ id: null, chainId: '', chainSeq: 0, reason: `line ${i + 1}: second header` })
      header = o
    } else if (o.kind === 'event') {
      const e = eventFromWire(o)
      if (!e) formatProblems.push({ id: typeof o.id === 'number' ? o.id : null, chainId: str(o.chain_id) ?? '', chainSeq: typeof o.chain_seq === 'number' ? o.chain_seq : 0, reason: `line ${i + 1}: malformed event` })
      else events.push(e)
    } else if (o.kind === 'checkpoint') {
      const c: AuditCheckpoint = {
        chainId: str(o.chain_id) ?? '', chainSeq: typeof o.chain_seq === 'number' ? o.chain_seq : 0, headHash: str(o.head_hash) ?? '',
        ts: typeof o.ts === 'number' ? o.ts : 0, kid: str(o.kid) ?? '', signature: str(o.signature) ?? '',
      }
      const prev = checkpoints.get(c.chainId)
      if (!prev || c.chainSeq > prev.chainSeq) checkpoints.set(c.chainId, c)
    } else {
      formatProblems.push({ id: null, chainId: '', chainSeq: 0, reason: `line ${i + 1}: unknown kind` })
    }
  })
  const h = header as Record<string, unknown> | null
  const keySet = jwks ?? (h && typeof h.jwks === 'object' && h.jwks !== null && Array.isArray((h.jwks as Jwks).keys) ? (h.jwks as Jwks) : { keys: [] })
  if (!h || h.format !== EXPORT_FORMAT) formatProblems.push({ id: null, chainId: '', chainSeq: 0, reason: `no ${EXPORT_FORMAT} header line` })
  const chainIds = [...new Set([...events.map((e) => e.chainId), ...checkpoints.keys()])]
  for (const chainId of chainIds) checkers.set(chainId, new ChainChecker(chainId, checkpoints.get(chainId)))
  for (const e of events) checkers.get(e.chainId)!.feed(e)
  const keys = keyMap(keySet)
  const reports: ChainReport[] = []
  for (const c of checkers.values()) reports.push(await c.finish(keys))
  const report = summarize(reports, checkpoints.size)
  if (formatProblems.length > 0) {
    report.ok = false
    report.problems.unshift(...formatProblems)
    report.firstBad = formatProblems[0]!
  }
  return report
}
