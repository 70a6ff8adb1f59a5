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

class ChainWriter implements ChainAuditWriter {
  private queue: Pending[] = []
  private scheduled = false
  private writing: Promise<void> | null = null
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

  /** Group commit: everything appended before the next turn of the event loop shares one transaction. */
  private schedule(): void {
    if (this.scheduled || this.writing) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.startDrain()
    })
  }

  private startDrain(): void {
    if (this.writing || this.queue.length === 0) return
    this.writing = this.drain()
      .catch((err: unknown) => {
        this.deps.logger.error({ err, chain: this.chainId }, 'audit writer failed unexpectedly')
      })
      .finally(() => {
        this.writing = null
        // An append may have slipped in after the loop saw an empty queue.
        if (this.queue.length > 0) this.schedule()
      })
  }

  private async drain(): Promise<void> {
    const max = this.deps.maxBatch ?? 1000
    while (this.queue.length > 0) {
      const taken = this.queue.splice(0, max)
      // Chained at write time from the committed head, so a failed batch
      // leaves nothing to unwind: the next batch starts from the same head.
      let seq = this.seq
      let prev = this.hash
      const batch: Pending[] = []
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
        batch.push(p)
        row.hash = hash
        rows.push(row)
      }
      if (rows.length === 0) continue
      try {
        await this.deps.store.audit.append(rows)
      } catch (err) {
        this.deps.logger.error({ err, chain: this.chainId, events: batch.length }, 'audit batch not written; callers get 503')
        const failure = new Unavailable('audit log unavailable', { cause: err })
        for (const p of batch) p.reject(failure)
        await this.resync()
        continue
      }
      this.seq = seq
      this.hash = prev
      for (const p of batch) p.resolve()
    }
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

  async flush(): Promise<void> {
    while (this.writing || this.queue.length > 0) {
      if (!this.writing) this.startDrain()
      await this.writing
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
