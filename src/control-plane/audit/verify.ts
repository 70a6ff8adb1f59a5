import { compactVerify, importJWK, type JWK } from 'jose'
import { epochSeconds, systemClock, type Clock } from '../../lib/clock.js'
import type { AuditCheckpoint, AuditEvent, Store } from '../../store/types.js'
import { CHECKPOINT_TYP, GENESIS_HASH, checkpointToWire, eventHash, eventToWire } from './chain.js'

/** The first thing wrong with one chain. */
export interface AuditProblem {
  /** Global id of the offending event; null when the event is missing (deleted) or the problem is a checkpoint's. */
  id: number | null
  chainId: string
  /** Position of the offending (or missing) event, or of the offending checkpoint, in its chain. */
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
  /** Signed checkpoints of this chain checked (each one: signature, and the head it names). */
  checkpoints: number
  problem: AuditProblem | null
}

/**
 * Where the public keys that checkpoints were checked against came from:
 * `pinned` = a JWK Set the verifier supplied (`--jwks`), kept outside the
 * database; `database` / `export` = the same place as the log, which someone
 * able to rewrite the log can also rewrite.
 */
export type KeySource = 'pinned' | 'database' | 'export'

/** Outcome of `aegis audit verify` (store or export file). */
export interface AuditVerifyReport {
  /** True only when every chain is whole. */
  ok: boolean
  chains: ChainReport[]
  events: number
  checkpoints: number
  keySource: KeySource
  /** The first bad event (lowest id among the chains' first problems), null when whole. */
  firstBad: AuditProblem | null
  /** The first problem of every broken chain. */
  problems: AuditProblem[]
  /** Latest verified checkpoint of each whole chain: what `--heads` records for the next run. */
  heads: ChainHead[]
}

/** A signed chain head a verifier has seen (the `--heads` file holds one per chain). */
export interface ChainHead {
  chainId: string
  chainSeq: number
  headHash: string
  ts: number
}

/** Format name in the export header line: events and checkpoints carry `ts_ms`, the header `exported_at` in epoch seconds. */
export const EXPORT_FORMAT = 'aegis-audit-export/2'
/** The first format, whose events and checkpoints carried the same time as `ts`; still verified. */
const EXPORT_FORMAT_V1 = 'aegis-audit-export/1'
/** Format name of a `--heads` file. */
export const HEADS_FORMAT = 'aegis-audit-heads/1'

/** A JWK Set (RFC 7517 §5). */
export type Jwks = { keys: Record<string, unknown>[] }

/** Checks checkpoint signatures; imported keys are cached by kid. */
class CheckpointKeys {
  private readonly imported = new Map<string, Promise<Parameters<typeof compactVerify>[1] | null>>()

  constructor(
    private readonly jwks: Map<string, Record<string, unknown>>,
    readonly source: KeySource,
  ) {}

  private key(kid: string): Promise<Parameters<typeof compactVerify>[1] | null> | undefined {
    const jwk = this.jwks.get(kid)
    if (!jwk) return undefined
    let k = this.imported.get(kid)
    if (!k) {
      k = importJWK({ ...(jwk as JWK), alg: 'EdDSA' }, 'EdDSA').then(
        (x) => x as Parameters<typeof compactVerify>[1],
        () => null,
      )
      this.imported.set(kid, k)
    }
    return k
  }

  /** What is wrong with a checkpoint's signature, or null when it verifies and covers exactly the row's fields. */
  async check(cp: AuditCheckpoint): Promise<string | null> {
    const at = `checkpoint at chain_seq ${cp.chainSeq}`
    const pending = this.key(cp.kid)
    if (!pending) {
      return this.source === 'pinned'
        ? `${at} is signed by unknown kid ${cp.kid}: not among the pinned keys (re-signed with a key from elsewhere?)`
        : `${at} is signed by unknown kid ${cp.kid}`
    }
    const key = await pending
    if (!key) return `${at}: the key of kid ${cp.kid} is not a usable Ed25519 public key`
    let payload: Record<string, unknown>
    try {
      const res = await compactVerify(cp.signature, key, { algorithms: ['EdDSA'] })
      if (res.protectedHeader.typ !== CHECKPOINT_TYP || res.protectedHeader.kid !== cp.kid) return `${at} has a wrong header`
      payload = JSON.parse(new TextDecoder().decode(res.payload)) as Record<string, unknown>
    } catch {
      return `${at}: signature does not verify with kid ${cp.kid}`
    }
    if (payload.chain_id !== cp.chainId || payload.chain_seq !== cp.chainSeq || payload.head_hash !== cp.headHash || payload.ts !== cp.ts) {
      return `${at} does not match what its signature covers (checkpoint row altered)`
    }
    return null
  }
}

/**
 * Checks one chain: its events in chain_seq order, and every checkpoint of
 * the chain in chain_seq order alongside them (each checkpoint is checked
 * once the event it names has been read). Keeps nothing per event, so a
 * chain of any length fits in memory.
 */
class ChainChecker {
  private expected = 1
  private prevHash = GENESIS_HASH
  private lastId = Number.NEGATIVE_INFINITY
  private count = 0
  private headSeq = 0
  private checked = 0
  private lastCheckpoint: AuditCheckpoint | null = null
  private lastGood: AuditCheckpoint | null = null
  problem: AuditProblem | null = null

  constructor(
    readonly chainId: string,
    private readonly checkpoints: AsyncIterator<AuditCheckpoint>,
    private readonly keys: CheckpointKeys,
  ) {}

  private next: AuditCheckpoint | null | undefined

  private async peek(): Promise<AuditCheckpoint | null> {
    if (this.next === undefined) {
      const r = await this.checkpoints.next()
      this.next = r.done ? null : r.value
    }
    return this.next
  }

  private bad(id: number | null, chainSeq: number, reason: string): void {
    this.problem ??= { id, chainId: this.chainId, chainSeq, reason }
  }

  async feed(e: AuditEvent): Promise<void> {
    this.count += 1
    if (this.problem) return
    if (e.chainSeq !== this.expected) {
      return this.bad(
        e.id,
        e.chainSeq,
        e.chainSeq > this.expected
          ? `chain_seq ${this.expected}${e.chainSeq - this.expected > 1 ? `..${e.chainSeq - 1}` : ''} missing before this event (deleted)`
          : `chain_seq ${e.chainSeq} where ${this.expected} was expected (duplicated or reordered)`,
      )
    }
    if (!(e.id > this.lastId)) return this.bad(e.id, e.chainSeq, `id ${e.id} is not above id ${this.lastId} of chain_seq ${e.chainSeq - 1}: rows reordered`)
    if (eventHash(e) !== e.hash) return this.bad(e.id, e.chainSeq, 'hash does not match the event content: event altered')
    if (e.prevHash !== this.prevHash)
      return this.bad(
        e.id,
        e.chainSeq,
        `prev_hash does not match the hash of chain_seq ${e.chainSeq - 1}: chain broken (an earlier event was altered, replaced or removed)`,
      )
    this.prevHash = e.hash
    this.lastId = e.id
    this.headSeq = e.chainSeq
    this.expected += 1
    // Every checkpoint up to this event: a signature that verifies, naming this event's hash.
    for (let cp = await this.peek(); cp !== null && cp.chainSeq <= e.chainSeq; cp = await this.peek()) {
      this.next = undefined
      await this.checkCheckpoint(cp, cp.chainSeq === e.chainSeq ? e.hash : null)
      if (this.problem) return
    }
  }

  private async checkCheckpoint(cp: AuditCheckpoint, eventHashAtSeq: string | null): Promise<void> {
    this.checked += 1
    if (this.lastCheckpoint && cp.chainSeq === this.lastCheckpoint.chainSeq) {
      return this.bad(null, cp.chainSeq, `two checkpoints at chain_seq ${cp.chainSeq}`)
    }
    this.lastCheckpoint = cp
    const sig = await this.keys.check(cp)
    if (sig) return this.bad(null, cp.chainSeq, sig)
    if (eventHashAtSeq === null) return this.bad(null, cp.chainSeq, `checkpoint at chain_seq ${cp.chainSeq} names no event of the chain`)
    if (eventHashAtSeq !== cp.headHash) return this.bad(null, cp.chainSeq, `event at chain_seq ${cp.chainSeq} does not match the signed checkpoint head`)
    this.lastGood = cp
  }

  async finish(): Promise<ChainReport> {
    // Checkpoints past the last event read: newest events deleted (or a forged checkpoint, which the signature check names).
    for (let cp = await this.peek(); cp !== null && !this.problem; cp = await this.peek()) {
      this.next = undefined
      this.checked += 1
      this.lastCheckpoint = cp
      const sig = await this.keys.check(cp)
      if (sig) this.bad(null, cp.chainSeq, sig)
      else
        this.bad(
          null,
          this.headSeq + 1,
          `chain_seq ${this.headSeq + 1}..${cp.chainSeq} missing: a signed checkpoint covers up to ${cp.chainSeq} (newest events deleted)`,
        )
    }
    // Count what was not walked (after a problem) so the summary says how many checkpoints the chain has.
    for (let cp = await this.peek(); cp !== null; cp = await this.peek()) {
      this.next = undefined
      this.lastCheckpoint = cp
      this.checked += 1
    }
    return {
      chainId: this.chainId,
      events: this.count,
      headSeq: this.headSeq,
      checkpointSeq: this.lastCheckpoint?.chainSeq ?? null,
      checkpoints: this.checked,
      problem: this.problem,
    }
  }

  /** The latest checkpoint that verified and matched its event, when the chain is whole. */
  verifiedHead(): ChainHead | null {
    if (this.problem || !this.lastGood) return null
    const { chainId, chainSeq, headHash, ts } = this.lastGood
    return { chainId, chainSeq, headHash, ts }
  }
}

/** Public keys by kid; entries with a private part (`d`) are refused outright. */
export function keyMap(jwks: Jwks): Map<string, Record<string, unknown>> {
  const m = new Map<string, Record<string, unknown>>()
  for (const k of jwks.keys) if (typeof k.kid === 'string' && k.d === undefined) m.set(k.kid, k)
  return m
}

/**
 * Reads a JWK Set file's text; throws an Error naming what is wrong (not
 * JSON, no `keys` array, a private key).
 */
export function parseJwks(text: string, name: string): Jwks {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    throw new Error(`${name} is not JSON`)
  }
  if (v === null || typeof v !== 'object' || !Array.isArray((v as Jwks).keys)) throw new Error(`${name} is not a JWK Set ({"keys": [...]})`)
  const keys = (v as Jwks).keys
  if (keys.some((k) => k === null || typeof k !== 'object' || Array.isArray(k))) throw new Error(`${name}: every key must be a JSON object`)
  if (keys.some((k) => k.d !== undefined)) throw new Error(`${name} holds a private key; pin public keys only`)
  return { keys }
}

/**
 * Compares what was verified with the heads a previous run recorded: each
 * chain seen before must still hold the event it held then (same chain_seq,
 * same hash). This is what catches the newest events cut together with the
 * checkpoints that covered them, which no signature can show. Returns one
 * problem per chain that shrank or was rewritten.
 */
async function checkAgainstHeads(
  seen: readonly ChainHead[],
  hashAt: (chainId: string, chainSeq: number) => Promise<string | null>,
  chains: readonly ChainReport[],
): Promise<AuditProblem[]> {
  const out: AuditProblem[] = []
  for (const h of seen) {
    const report = chains.find((c) => c.chainId === h.chainId)
    if (!report) {
      out.push({
        id: null,
        chainId: h.chainId,
        chainSeq: h.chainSeq,
        reason: `chain ${h.chainId} is gone: a previous verification saw it signed up to chain_seq ${h.chainSeq}`,
      })
      continue
    }
    if (report.problem) continue
    const hash = await hashAt(h.chainId, h.chainSeq)
    if (hash === null)
      out.push({
        id: null,
        chainId: h.chainId,
        chainSeq: report.headSeq + 1,
        reason:
          `chain_seq ${report.headSeq + 1}..${h.chainSeq} missing: a previous verification saw the chain signed up to ${h.chainSeq} (newest ` +
          `events and their checkpoints deleted)`,
      })
    else if (hash !== h.headHash)
      out.push({
        id: null,
        chainId: h.chainId,
        chainSeq: h.chainSeq,
        reason: `event at chain_seq ${h.chainSeq} differs from the one a previous verification saw (history rewritten)`,
      })
  }
  return out
}

function summarize(chains: ChainReport[], keySource: KeySource, heads: ChainHead[], extra: AuditProblem[] = []): AuditVerifyReport {
  const problems = [...extra, ...chains.flatMap((c) => (c.problem ? [c.problem] : []))]
  const firstBad = [...problems].sort((a, b) => (a.id ?? Number.MAX_SAFE_INTEGER) - (b.id ?? Number.MAX_SAFE_INTEGER))[0] ?? null
  return {
    ok: problems.length === 0,
    chains,
    events: chains.reduce((n, c) => n + c.events, 0),
    checkpoints: chains.reduce((n, c) => n + c.checkpoints, 0),
    keySource,
    firstBad,
    problems,
    heads: problems.length === 0 ? heads : [],
  }
}

async function storedJwks(store: Store): Promise<Jwks> {
  const keys = await store.keys.list()
  return { keys: keys.map((k) => ({ ...k.publicJwk, kid: k.kid, alg: 'EdDSA', use: 'sig' })) }
}

const PAGE = 1000

async function* pages<T>(load: (after: number) => Promise<T[]>, seqOf: (t: T) => number): AsyncGenerator<T> {
  let after = 0
  for (;;) {
    const page = await load(after)
    yield* page
    if (page.length < PAGE) return
    after = seqOf(page[page.length - 1]!)
  }
}

/** Options of verifyAuditStore / verifyAuditExport. */
export interface VerifyOptions {
  /**
   * Public keys pinned outside the database (e.g. the JWKS saved from the
   * live issuer at each rotation): checkpoints are checked against these
   * only, so a checkpoint re-signed with a key someone added to the
   * database fails. Without it the keys come from the database or the
   * export's header.
   */
  jwks?: Jwks
  /** Heads a previous verification recorded: each chain must still reach them unchanged. */
  heads?: ChainHead[]
}

/**
 * Proves every audit chain in the store whole: chain_seq contiguous from 1,
 * ids increasing with chain_seq, each prev_hash linking to its predecessor,
 * each hash recomputed from the content, and EVERY signed checkpoint of each
 * chain verified (against `opts.jwks` when given, else the stored public
 * keys), each naming the hash of the event at its chain_seq, so deleting the
 * newest events under a checkpoint shows. Names each broken chain's first
 * bad event.
 */
export async function verifyAuditStore(store: Store, opts: VerifyOptions = {}): Promise<AuditVerifyReport> {
  const latest = await store.audit.latestCheckpoints()
  const chainIds = [...new Set([...(await store.audit.chains()), ...latest.map((c) => c.chainId)])].sort()
  const keys = new CheckpointKeys(keyMap(opts.jwks ?? (await storedJwks(store))), opts.jwks ? 'pinned' : 'database')
  const reports: ChainReport[] = []
  const heads: ChainHead[] = []
  for (const chainId of chainIds) {
    const cps = pages(
      (after) => store.audit.checkpoints(chainId, after, PAGE),
      (c) => c.chainSeq,
    )
    const checker = new ChainChecker(chainId, cps, keys)
    for await (const e of pages(
      (after) => store.audit.chain(chainId, after, PAGE),
      (x) => x.chainSeq,
    ))
      await checker.feed(e)
    reports.push(await checker.finish())
    const head = checker.verifiedHead()
    if (head) heads.push(head)
  }
  const headProblems = opts.heads
    ? await checkAgainstHeads(
        opts.heads,
        async (chainId, seq) => (await store.audit.chain(chainId, seq - 1, 1)).find((e) => e.chainSeq === seq)?.hash ?? null,
        reports,
      )
    : []
  return summarize(reports, keys.source, heads, headProblems)
}

/**
 * Writes the whole audit log as JSON Lines: a header
 * `{"kind":"header","format","exported_at","jwks"}` with every public key the
 * store ever held, then each chain's events `{"kind":"event",…snake_case…}`
 * in chain order, then every signed checkpoint of each chain
 * `{"kind":"checkpoint",…}`, so the export verifies offline against keys
 * pinned elsewhere. No private material.
 */
export async function exportAudit(store: Store, write: (line: string) => void, opts: { clock?: Clock } = {}): Promise<{ events: number; checkpoints: number }> {
  const clock = opts.clock ?? systemClock
  write(JSON.stringify({ kind: 'header', format: EXPORT_FORMAT, exported_at: epochSeconds(clock.now()), jwks: await storedJwks(store) }))
  const latest = await store.audit.latestCheckpoints()
  const chainIds = [...new Set([...(await store.audit.chains()), ...latest.map((c) => c.chainId)])].sort()
  let events = 0
  for (const chainId of chainIds) {
    for await (const e of pages(
      (after) => store.audit.chain(chainId, after, PAGE),
      (x) => x.chainSeq,
    )) {
      write(JSON.stringify({ kind: 'event', ...eventToWire(e) }))
      events += 1
    }
  }
  let checkpoints = 0
  for (const chainId of chainIds) {
    for await (const c of pages(
      (after) => store.audit.checkpoints(chainId, after, PAGE),
      (x) => x.chainSeq,
    )) {
      write(JSON.stringify({ kind: 'checkpoint', ...checkpointToWire(c) }))
      checkpoints += 1
    }
  }
  return { events, checkpoints }
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null
}

/** The time of an event or checkpoint line: `ts_ms`, or `ts` in the first export format; either is the `ts` that was hashed and signed. */
type TimeKey = 'ts_ms' | 'ts'

function eventFromWire(o: Record<string, unknown>, timeKey: TimeKey): AuditEvent | null {
  const n = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null)
  const id = n(o.id),
    chainSeq = n(o.chain_seq),
    ts = n(o[timeKey])
  const chainId = str(o.chain_id),
    type = str(o.type),
    prevHash = str(o.prev_hash),
    hash = str(o.hash)
  if (id === null || chainSeq === null || ts === null || chainId === null || type === null || prevHash === null || hash === null) return null
  const data = o.data !== null && typeof o.data === 'object' && !Array.isArray(o.data) ? (o.data as Record<string, unknown>) : null
  if (!data) return null
  return { id, chainId, chainSeq, ts, type, tenant: str(o.tenant), actor: str(o.actor), subject: str(o.subject), data, prevHash, hash }
}

async function* iterate<T>(list: readonly T[]): AsyncGenerator<T> {
  yield* list
}

/**
 * Verifies an export offline with public keys only: the same checks as
 * verifyAuditStore, every checkpoint line included. `opts.jwks` (keys pinned
 * outside the database) replaces the file's header, so a forger cannot bring
 * their own keys; without it the header's keys are used. Lines that are not
 * valid export records are reported as problems.
 */
export async function verifyAuditExport(lines: string[], opts: VerifyOptions = {}): Promise<AuditVerifyReport> {
  let header: Record<string, unknown> | null = null
  const events: Array<AuditEvent> = []
  const checkpoints = new Map<string, AuditCheckpoint[]>()
  const formatProblems: AuditProblem[] = []
  const parsed = lines.map((line, i): Record<string, unknown> | null => {
    if (line.trim() === '') return null
    try {
      const o = JSON.parse(line) as Record<string, unknown>
      if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new Error('not an object')
      return o
    } catch {
      formatProblems.push({ id: null, chainId: '', chainSeq: 0, reason: `line ${i + 1} is not a JSON object` })
      return null
    }
  })
  // The header names the format, and the format which key holds each line's time.
  const timeKey: TimeKey = parsed.find((o) => o?.kind === 'header')?.format === EXPORT_FORMAT_V1 ? 'ts' : 'ts_ms'
  parsed.forEach((o, i) => {
    if (o === null) return
    if (o.kind === 'header') {
      if (header) formatProblems.push({ id: null, chainId: '', chainSeq: 0, reason: `line ${i + 1}: second header` })
      header = o
    } else if (o.kind === 'event') {
      const e = eventFromWire(o, timeKey)
      if (!e)
        formatProblems.push({
          id: typeof o.id === 'number' ? o.id : null,
          chainId: str(o.chain_id) ?? '',
          chainSeq: typeof o.chain_seq === 'number' ? o.chain_seq : 0,
          reason: `line ${i + 1}: malformed event`,
        })
      else events.push(e)
    } else if (o.kind === 'checkpoint') {
      const c: AuditCheckpoint = {
        chainId: str(o.chain_id) ?? '',
        chainSeq: typeof o.chain_seq === 'number' ? o.chain_seq : 0,
        headHash: str(o.head_hash) ?? '',
        ts: typeof o[timeKey] === 'number' ? (o[timeKey] as number) : 0,
        kid: str(o.kid) ?? '',
        signature: str(o.signature) ?? '',
      }
      const list = checkpoints.get(c.chainId) ?? []
      list.push(c)
      checkpoints.set(c.chainId, list)
    } else {
      formatProblems.push({ id: null, chainId: '', chainSeq: 0, reason: `line ${i + 1}: unknown kind` })
    }
  })
  const h = header as Record<string, unknown> | null
  const headerJwks = h && typeof h.jwks === 'object' && h.jwks !== null && Array.isArray((h.jwks as Jwks).keys) ? (h.jwks as Jwks) : { keys: [] }
  if (!h || (h.format !== EXPORT_FORMAT && h.format !== EXPORT_FORMAT_V1))
    formatProblems.push({ id: null, chainId: '', chainSeq: 0, reason: `no ${EXPORT_FORMAT} header line` })
  const keys = new CheckpointKeys(keyMap(opts.jwks ?? headerJwks), opts.jwks ? 'pinned' : 'export')
  const byChain = new Map<string, AuditEvent[]>()
  for (const e of events) {
    const list = byChain.get(e.chainId) ?? []
    list.push(e)
    byChain.set(e.chainId, list)
  }
  const chainIds = [...new Set([...byChain.keys(), ...checkpoints.keys()])].sort()
  const reports: ChainReport[] = []
  const heads: ChainHead[] = []
  for (const chainId of chainIds) {
    // Events stay in file order (a reordered export is caught as such); checkpoints are taken in chain_seq order.
    const cps = [...(checkpoints.get(chainId) ?? [])].sort((a, b) => a.chainSeq - b.chainSeq)
    const checker = new ChainChecker(chainId, iterate(cps), keys)
    for (const e of byChain.get(chainId) ?? []) await checker.feed(e)
    reports.push(await checker.finish())
    const head = checker.verifiedHead()
    if (head) heads.push(head)
  }
  const headProblems = opts.heads
    ? await checkAgainstHeads(opts.heads, async (chainId, seq) => byChain.get(chainId)?.find((e) => e.chainSeq === seq)?.hash ?? null, reports)
    : []
  const report = summarize(reports, keys.source, heads, headProblems)
  if (formatProblems.length > 0) {
    report.ok = false
    report.heads = []
    report.problems.unshift(...formatProblems)
    report.firstBad = formatProblems[0]!
  }
  return report
}

/** Reads a `--heads` file's text (see HEADS_FORMAT); throws an Error naming what is wrong. */
export function parseHeads(text: string, name: string): ChainHead[] {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    throw new Error(`${name} is not JSON`)
  }
  const o = v as { format?: unknown; chains?: unknown }
  if (!o || typeof o !== 'object' || o.format !== HEADS_FORMAT || !o.chains || typeof o.chains !== 'object' || Array.isArray(o.chains)) {
    throw new Error(`${name} is not an ${HEADS_FORMAT} file`)
  }
  return Object.entries(o.chains as Record<string, unknown>).map(([chainId, raw]) => {
    const h = raw as { chain_seq?: unknown; head_hash?: unknown; ts?: unknown }
    if (!h || typeof h.chain_seq !== 'number' || !Number.isInteger(h.chain_seq) || h.chain_seq < 1 || typeof h.head_hash !== 'string') {
      throw new Error(`${name}: chain ${chainId} needs chain_seq (a positive integer) and head_hash`)
    }
    return { chainId, chainSeq: h.chain_seq, headHash: h.head_hash, ts: typeof h.ts === 'number' ? h.ts : 0 }
  })
}

/**
 * The `--heads` file to keep after a whole verification: every chain's
 * latest verified checkpoint, plus the chains of `previous` this run did not
 * see (they were reported as problems, so this is only written when whole).
 */
export function headsFile(report: AuditVerifyReport, previous: readonly ChainHead[] = []): string {
  const chains: Record<string, { chain_seq: number; head_hash: string; ts: number }> = {}
  for (const h of previous) chains[h.chainId] = { chain_seq: h.chainSeq, head_hash: h.headHash, ts: h.ts }
  for (const h of report.heads) {
    const before = chains[h.chainId]
    if (!before || h.chainSeq >= before.chain_seq) chains[h.chainId] = { chain_seq: h.chainSeq, head_hash: h.headHash, ts: h.ts }
  }
  return `${JSON.stringify({ format: HEADS_FORMAT, chains }, null, 2)}\n`
}
