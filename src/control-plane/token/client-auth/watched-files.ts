/**
 * Deployment files read on the token path (client CA bundles, CRLs), kept
 * parsed in memory and reloaded when they change on disk: at most every
 * `checkMs` a `stat` compares size, mtime, ctime and inode (an atomic
 * replace by rename changes the inode), and only a changed file is read and
 * parsed again. A file that cannot be read or parsed keeps its last good
 * content (a half-written update must not drop a revocation) and is
 * reported; one that never loaded yields its error.
 */
import { readFileSync, statSync } from 'node:fs'
import type { Clock } from '../../../lib/clock.js'
import type { Logger } from '../../../observability/logger.js'

interface Slot<T> {
  signature: string | null
  value: T | null
  error: Error | null
  checkedAt: number
}

/** What a file gave: its parsed content, or why there is none. */
export type Loaded<T> = { value: T; error: null } | { value: null; error: Error }

export class WatchedFiles<T> {
  private readonly slots = new Map<string, Slot<T>>()

  /**
   * @param what names the kind of file in logs ("client CA bundle").
   * @param parse turns the file's bytes into T; throws on bad content.
   */
  constructor(
    private readonly what: string,
    private readonly parse: (content: Buffer) => T,
    private readonly deps: { clock: Clock; logger: Logger; checkMs: number },
  ) {}

  /** The current content of `file`, reloaded first when the check period passed and the file changed. */
  get(file: string): Loaded<T> {
    const now = this.deps.clock.now()
    let slot = this.slots.get(file)
    if (!slot || now - slot.checkedAt >= this.deps.checkMs) {
      slot ??= { signature: null, value: null, error: null, checkedAt: now }
      slot.checkedAt = now
      this.slots.set(file, slot)
      this.refresh(file, slot)
    }
    return slot.value !== null ? { value: slot.value, error: null } : { value: null, error: slot.error ?? new Error(`${file}: not loaded`) }
  }

  private refresh(file: string, slot: Slot<T>): void {
    let signature: string
    try {
      const st = statSync(file)
      signature = `${st.size}:${st.mtimeMs}:${st.ctimeMs}:${st.ino}`
    } catch (err) {
      if (slot.signature !== 'missing') this.deps.logger.error({ err, file }, `${this.what} unreadable; keeping the last good content`)
      slot.signature = 'missing'
      slot.error ??= err as Error
      return
    }
    if (signature === slot.signature) return
    const reload = slot.signature !== null
    slot.signature = signature
    try {
      slot.value = this.parse(readFileSync(file))
      slot.error = null
      if (reload) this.deps.logger.info({ file }, `${this.what} reloaded`)
    } catch (err) {
      slot.error = err as Error
      this.deps.logger.error({ err, file }, `${this.what} unreadable; keeping the last good content`)
    }
  }
}
