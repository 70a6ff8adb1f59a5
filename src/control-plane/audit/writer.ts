import { Unavailable } from '../../errors.js'
import type { Clock } from '../../lib/clock.js'
import type { Logger } from '../../observability/logger.js'
import type { AuditEventInput, NewAuditEvent, Store } from '../../store/types.js'
import type { KeyManager } from '../keys/types.js'
import { CHECKPOINT_TYP, GENESIS_HASH, eventHashPrepared, normalizeText, prepareData, type PreparedData } from './chain.js'
import type { AuditWriter } from './types.js'

export interface AuditWriterDeps {
  store: Store
  /** Signs checkpoints with the current key. */
  keys: KeyManager
  clock: Clock
  logger: Logger
  /** This writer's chain (the control-plane instance id); an existing chain is resumed. */
  chainId: string
  /** Sign the chain head at least this often (ms) while it moves. */
  checkpointIntervalMs: number
  /** Most events in one transaction (default 1000); more wait for the next one. */
  maxBatch?: number
}

/** The writer plus what its owner and tests use. */
export interface ChainAuditWriter extends AuditWriter {
  /** Resolves once every event appended so far has been written (or refused). */
  flush(): Promise<void>
  /** Signs and stores a checkpoint of the committed head now, if it moved since the last one. */
  checkpoint(): Promise<void>
  /** Committed head: last chain_seq and hash (0 and the genesis hash for an empty chain). */
  head(): { seq: number; hash: string }
}

interface Pending {
  type: string
  tenant: string | null
  actor: string | null
  subject: string | null
  data: PreparedData
  ts: number
  resolve: () => void
  reject: (err: Error) => void
}

/** A batch handed to the store: its callers and the head it leaves the chain at once written. */
interface SentBatch {
  callers: Pending[]
  seq: number
  hash: string
}

class ChainWriter implements ChainAuditWriter {
  private queue: Pending[] = []
  private scheduled = false
  /** Batches handed to the store and not yet answered, oldest first. */
  private inFlight = 0
  /** Where the next batch is chained from: the head after the last batch sent (the committed head when none is in flight). */
  private nextSeq: number
  private nextHash: string
  /** A batch failed: nothing more is sent until the ones in flight are answered and the head is read back. */
  private broken = false
  private recovering: Promise<void> | null = null
  private idleWaiters: Array<() => void> = []
  private checkpointing: Promise<void> | null = null
  private timer: NodeJS.Timeout | undefined
  private closed = false
  private checkpointedSeq = 0

  constructor(
    readonly chainId: string,
    private readonly deps: AuditWriterDeps,
    private seq: number,
    private hash: string,
    checkpointedSeq: number,
  ) {
    this.checkpointedSeq = checkpointedSeq
    this.nextSeq = seq
    this.nextHash = hash
  }

  head(): { seq: number; hash: string } {
    return { seq: this.seq, hash: this.hash }
  }

  append(event: AuditEventInput): Promise<void> {
    if (this.closed) return Promise.reject(new Unavailable('audit log is closed'))
    let data: PreparedData
    try {
      // Canonical form of the data now, outside the batch: it does not depend on the chain position.
      data = prepareData(event.data)
    } catch (err) {
      // No canonical form (e.g. a lone surrogate in a data key): refuse this event alone.
      return Promise.reject(new Unavailable('audit event cannot be recorded', { cause: err }))
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({
        type: normalizeText(event.type) ?? '',
        tenant: normalizeText(event.tenant),
        actor: normalizeText(event.actor),
        subject: normalizeText(event.subject),
        data,
        ts: this.deps.clock.now(),
        resolve,
        reject,
      })
      this.schedule()
    })
  }

  /** Group commit: everything appended before the next turn of the event loop shares one batch. */
  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.dispatch()
    })
  }

  /**
   * Sends what is queued while the store takes another batch
   * (`store.audit.appendDepth`: two on SQLite's append thread, where each
   * batch checks that it `follows` the head its predecessor left, so one
   * chained on a failed batch fails too; one elsewhere).
   */
  private dispatch(): void {
    const max = this.deps.maxBatch ?? 1000
    const depth = this.deps.store.audit.appendDepth
    while (this.queue.length > 0 && !this.broken && this.inFlight < depth) {
      const batch = this.chain(this.queue.splice(0, max))
      if (batch) this.send(batch.sent, batch.rows, depth)
    }
    this.notifyIdle()
  }

  /** Chains events from the head the last batch sent leaves; an event that cannot be hashed is refused alone. */
  private chain(taken: Pending[]): { sent: SentBatch; rows: NewAuditEvent[] } | null {
    let seq = this.nextSeq
    let prev = this.nextHash
    const callers: Pending[] = []
    const rows: NewAuditEvent[] = []
    for (const p of taken) {
      // One object per event: hashed first, then handed to the store with its hash filled in.
      const row: NewAuditEvent = {
        chainId: this.chainId,
        chainSeq: seq + 1,
        ts: p.ts,
        type: p.type,
        tenant: p.tenant,
        actor: p.actor,
        subject: p.subject,
        data: p.data.data,
        prevHash: prev,
        hash: '',
        dataJson: p.data.canonical,
      }
      let hash: string
      try {
        hash = eventHashPrepared(row, p.data.canonical)
      } catch (err) {
        p.reject(new Unavailable('audit event cannot be recorded', { cause: err }))
        continue
      }
      seq += 1
      prev = hash
      callers.push(p)
      row.hash = hash
      rows.push(row)
    }
    return rows.length === 0 ? null : { sent: { callers, seq, hash: prev }, rows }
  }

  private send(batch: SentBatch, rows: NewAuditEvent[], depth: number): void {
    // Checked only where batches overlap: one at a time, each follows the committed head by construction.
    const opts = depth > 1 ? { follows: { seq: this.nextSeq, hash: this.nextHash } } : undefined
    this.nextSeq = batch.seq
    this.nextHash = batch.hash
    this.inFlight += 1
    this.deps.store.audit.append(rows, opts).then(
      () => {
        this.inFlight -= 1
        // Answered in the order sent: this batch's head is the committed one.
        this.seq = batch.seq
        this.hash = batch.hash
        for (const p of batch.callers) p.resolve()
        this.afterAnswer()
      },
      (err: unknown) => {
        this.inFlight -= 1
        if (!this.broken) this.deps.logger.error({ err, chain: this.chainId, events: batch.callers.length }, 'audit batch not written; callers get 503')
        this.broken = true
        const failure = new Unavailable('audit log unavailable', { cause: err })
        for (const p of batch.callers) p.reject(failure)
        this.afterAnswer()
      },
    )
  }

  private afterAnswer(): void {
    if (this.broken && this.inFlight === 0 && !this.recovering) {
      this.recovering = this.resync().finally(() => {
        this.recovering = null
        this.nextSeq = this.seq
        this.nextHash = this.hash
        this.broken = false
        this.dispatch()
      })
      return
    }
    this.dispatch()
  }

  /**
   * After a failed write the store may still have committed it (a connection
   * lost after COMMIT): adopt the stored head so the chain does not fork or
   * collide on chain_seq. The callers already got 503, which is safe.
   */
  private async resync(): Promise<void> {
    try {
      const stored = await this.deps.store.audit.head(this.chainId)
      if (stored && stored.chainSeq > this.seq) {
        this.seq = stored.chainSeq
        this.hash = stored.hash
      }
    } catch {
      // Store still down: keep the last head we know was committed.
    }
  }

  private notifyIdle(): void {
    if (this.queue.length > 0 || this.inFlight > 0 || this.recovering || this.scheduled) return
    for (const wake of this.idleWaiters.splice(0)) wake()
  }

  async flush(): Promise<void> {
    while (this.queue.length > 0 || this.inFlight > 0 || this.recovering) {
      const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve))
      // Not waiting for the next turn of the loop: what is queued goes now.
      this.dispatch()
      await idle
    }
  }

  checkpoint(): Promise<void> {
    this.checkpointing ??= this.signHead().finally(() => {
      this.checkpointing = null
    })
    return this.checkpointing
  }

  private async signHead(): Promise<void> {
    const seq = this.seq
    const headHash = this.hash
    if (seq === 0 || seq === this.checkpointedSeq) return
    const ts = this.deps.clock.now()
    const { jwt, kid } = this.deps.keys.signJwt({ typ: CHECKPOINT_TYP }, { chain_id: this.chainId, chain_seq: seq, head_hash: headHash, ts })
    await this.deps.store.audit.putCheckpoint({ chainId: this.chainId, chainSeq: seq, headHash, ts, kid, signature: jwt })
    this.checkpointedSeq = Math.max(this.checkpointedSeq, seq)
  }

  startTimer(): void {
    this.timer = setInterval(() => {
      this.checkpoint().catch((err: unknown) => this.deps.logger.error({ err, chain: this.chainId }, 'audit checkpoint failed'))
    }, this.deps.checkpointIntervalMs)
    this.timer.unref()
  }

  async close(): Promise<void> {
    if (this.closed) {
      await this.flush()
      return
    }
    this.closed = true
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    await this.flush()
    await this.checkpointing?.catch(() => {})
    await this.checkpoint()
  }
}

/**
 * Opens this instance's audit chain: resumes from the stored head of
 * `chainId` (or starts at seq 1 after the genesis hash), then writes events
 * with group commit and signs the head every `checkpointIntervalMs` while it
 * moves, and once more at close.
 */
export async function createAuditWriter(deps: AuditWriterDeps): Promise<ChainAuditWriter> {
  if (deps.chainId.length === 0 || deps.chainId.length > 200) throw new Error('audit chainId must be 1..200 characters')
  const head = await deps.store.audit.head(deps.chainId)
  const checkpoints = await deps.store.audit.latestCheckpoints()
  const cp = checkpoints.find((c) => c.chainId === deps.chainId)
  const writer = new ChainWriter(deps.chainId, deps, head?.chainSeq ?? 0, head?.hash ?? GENESIS_HASH, cp?.chainSeq ?? 0)
  writer.startTimer()
  return writer
}
