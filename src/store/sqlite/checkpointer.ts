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
 * Eval'd CommonJS, so the same code runs from dist/ and under tsx.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const Database = require(workerData.driver)
const db = new Database(workerData.path)
db.pragma('busy_timeout = 0')
db.pragma('wal_autocheckpoint = 0')
const timer = setInterval(() => {
  try { db.pragma('wal_checkpoint(PASSIVE)') } catch { /* busy: the next tick retries */ }
}, workerData.intervalMs)
parentPort.once('message', () => {
  clearInterval(timer)
  try { db.close() } finally { process.exit(0) }
})
parentPort.postMessage('ready')
`

export interface Checkpointer {
  close(): Promise<void>
}

/** Starts the checkpoint worker for the database at `path`; resolves once its connection is open. */
export async function startCheckpointer(path: string, intervalMs: number): Promise<Checkpointer> {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3')
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, intervalMs, driver } })
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve())
    worker.once('error', reject)
    void exited.then(() => reject(new Error('checkpoint worker exited before it was ready')))
  })
  // Referenced until ready (the caller awaits it); afterwards it never keeps the process alive.
  worker.unref()
  return {
    close: async () => {
      worker.ref()
      worker.postMessage('close')
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000).unref())])
      if (worker.threadId !== -1) await worker.terminate()
    },
  }
}
