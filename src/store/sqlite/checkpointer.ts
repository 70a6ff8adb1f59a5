import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'

/**
 * Runs `PRAGMA wal_checkpoint(PASSIVE)` every `intervalMs` from its own
 * connection on a worker thread. A checkpoint copies WAL pages into the
 * database file (disk I/O, a few ms under issuance load); on the event loop
 * it stalled every request waiting behind it, and it was ~4 % of the loop's
 * time. A PASSIVE checkpoint from another connection never blocks the
 * writer (SQLite WAL semantics), so the main connection keeps
 * `wal_autocheckpoint = 0` and never checkpoints inside a commit.
 *
 * A PASSIVE checkpoint alone never lets the WAL start over under steady
 * writes: SQLite restarts the log only when a write transaction begins with
 * every frame copied, and frames committed while the worker copies (its two
 * fsyncs included) leave it short every time. Under issuance load the WAL
 * grew to 600 MB before a lucky pause, and ext4 zeroing each new block of it
 * was 10 % of the control plane's CPU (issue 20). So once the log passes
 * `restartFrames` the worker tells the owner, which holds every write
 * (SqliteSql.holdWrites) while the worker makes one more pass (`finish`):
 * with no commit coming, that pass copies every frame, and the next commit
 * restarts the log.
 *
 * Eval'd CommonJS, so the same code runs from dist/ and under tsx.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const Database = require(workerData.driver)
const db = new Database(workerData.path)
db.pragma('busy_timeout = 0')
db.pragma('wal_autocheckpoint = 0')
// While the owner finishes a checkpoint this connection stays out of its way (a pass of its own would make the owner's busy).
let ownerSince = 0
const timer = setInterval(() => {
  if (ownerSince !== 0 && Date.now() - ownerSince < 1000) return
  ownerSince = 0
  let result
  try { result = db.pragma('wal_checkpoint(PASSIVE)')[0] } catch { /* busy: the next tick retries */ }
  if (result && result.log >= workerData.restartFrames) {
    ownerSince = Date.now()
    parentPort.postMessage({ log: result.log, checkpointed: result.checkpointed })
  }
}, workerData.intervalMs)
parentPort.on('message', (m) => {
  if (m === 'owner-done') {
    ownerSince = 0
    return
  }
  if (typeof m === 'object' && m !== null && typeof m.finish === 'number') {
    // The owner holds every write meanwhile: this pass copies every frame.
    let result = null
    try { result = db.pragma('wal_checkpoint(PASSIVE)')[0] } catch { /* busy: reported as not finished */ }
    parentPort.postMessage({ finished: m.finish, ok: result !== null && result.busy === 0 && result.checkpointed === result.log })
    return
  }
  clearInterval(timer)
  try { db.close() } finally { process.exit(0) }
})
parentPort.postMessage('ready')
`

export interface Checkpointer {
  /**
   * One pass on the worker, for the owner holding every write: resolves
   * true when it copied every frame (the next write restarts the log),
   * false when it could not or `timeoutMs` passed (worker gone, or slow).
   */
  finish(timeoutMs: number): Promise<boolean>
  /** The owner's checkpoint asked for by `onLongLog` ran (or failed): passes resume. */
  ownerDone(): void
  close(): Promise<void>
}

export interface CheckpointerOptions {
  intervalMs: number
  /** WAL frames past which `onLongLog` is called after a pass. */
  restartFrames: number
  /** Called (on the owner's thread) after a pass that left the log longer than `restartFrames`; the worker pauses until `ownerDone` (at most 1 s). */
  onLongLog: (log: { frames: number; checkpointed: number }) => void
}

/** Starts the checkpoint worker for the database at `path`; resolves once its connection is open. */
export async function startCheckpointer(path: string, opts: CheckpointerOptions): Promise<Checkpointer> {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3')
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, intervalMs: opts.intervalMs, restartFrames: opts.restartFrames, driver } })
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve())
    worker.once('error', reject)
    void exited.then(() => reject(new Error('checkpoint worker exited before it was ready')))
  })
  // The pass waited for, by number: the answer to a pass that timed out never settles a later one.
  let finishing: { id: number; settle: (ok: boolean) => void } | null = null
  let passes = 0
  const finished = (id: number | null, ok: boolean): void => {
    if (finishing === null || (id !== null && id !== finishing.id)) return
    const { settle } = finishing
    finishing = null
    settle(ok)
  }
  worker.on('message', (m: { finished: number; ok: boolean } | { finished?: undefined; log: number; checkpointed: number }) => {
    if (m.finished !== undefined) finished(m.finished, m.ok)
    else opts.onLongLog({ frames: m.log, checkpointed: m.checkpointed })
  })
  void exited.then(() => finished(null, false))
  // Referenced until ready (the caller awaits it); afterwards it never keeps the process alive.
  worker.unref()
  return {
    finish: (timeoutMs) => {
      if (finishing) return Promise.resolve(false)
      const id = ++passes
      return new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => finished(id, false), timeoutMs)
        finishing = {
          id,
          settle: (ok) => {
            clearTimeout(timer)
            resolve(ok)
          },
        }
        worker.postMessage({ finish: id })
      })
    },
    ownerDone: () => worker.postMessage('owner-done'),
    close: async () => {
      worker.ref()
      worker.postMessage('close')
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000).unref())])
      if (worker.threadId !== -1) await worker.terminate()
    },
  }
}
