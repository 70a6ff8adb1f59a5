import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import type { Ed25519Signer } from './ed25519-signer.js'

/**
 * Signs the token endpoint's JWTs on a thread of their own, so that the
 * event loop, the issuance bottleneck, spends its time on HTTP. The
 * signatures of one turn of the event loop go as one message and come back
 * as one: about 1 µs a token of hand-off, against the 16 µs a libsodium
 * signature costs in place. (The thread pool, one job and one promise per
 * signature, cost more than it gave: ed25519-signer.ts.) Ed25519 is
 * deterministic, so the tokens are byte for byte those an in-place signer
 * would make; where the thread fails, signing falls back to the in-place
 * signer and nothing else changes.
 *
 * The thread holds its own copy of each private key: in libsodium's
 * guarded memory where sodium-native loads (else as a node:crypto
 * KeyObject), wiped when the key manager forgets the key, and the DER it
 * was sent is zeroed on both sides.
 *
 * Eval'd CommonJS, as the SQLite threads (src/store/sqlite/), so the same
 * code runs from dist/ and under tsx.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const crypto = require('node:crypto')
let sodium = null
try { sodium = workerData.sodium ? require(workerData.sodium) : null } catch { sodium = null }
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const keys = new Map()
function forget(kid) {
  const k = keys.get(kid)
  if (k && k.secret) sodium.sodium_memzero(k.secret)
  keys.delete(kid)
}
parentPort.on('message', (m) => {
  if (m.op === 'key') {
    const der = Buffer.from(m.der.buffer, m.der.byteOffset, m.der.byteLength)
    try {
      forget(m.kid)
      if (sodium && der.length === 48 && der.subarray(0, 16).equals(PKCS8_PREFIX)) {
        const secret = sodium.sodium_malloc(64)
        sodium.crypto_sign_seed_keypair(Buffer.alloc(32), secret, der.subarray(16))
        keys.set(m.kid, { secret })
      } else {
        keys.set(m.kid, { key: crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }) })
      }
    } finally {
      der.fill(0)
    }
  } else if (m.op === 'forget') {
    forget(m.kid)
  } else if (m.op === 'close') {
    for (const kid of [...keys.keys()]) forget(kid)
    process.exit(0)
  } else if (m.op === 'sign') {
    const k = keys.get(m.kid)
    if (!k) {
      parentPort.postMessage({ id: m.id, error: 'no such key on the signing thread' })
      return
    }
    const out = new Uint8Array(64 * m.inputs.length)
    for (let i = 0; i < m.inputs.length; i++) {
      const message = Buffer.from(m.inputs[i], 'latin1')
      const signature = Buffer.from(out.buffer, 64 * i, 64)
      if (k.secret) sodium.crypto_sign_detached(signature, message, k.secret)
      else crypto.sign(null, message, k.key).copy(signature)
    }
    parentPort.postMessage({ id: m.id, signatures: out }, [out.buffer])
  }
})
parentPort.postMessage('ready')
`

interface Waiting {
  resolve: (signature: Buffer) => void
  reject: (err: Error) => void
}

/** The signatures asked for under one key in this turn of the event loop. */
interface Batch {
  kid: string
  inputs: string[]
  waiting: Waiting[]
}

export class SigningThread {
  private nextId = 1
  private readonly sent = new Map<number, Waiting[]>()
  private batches = new Map<string, Batch>()
  private scheduled = false
  private failure: Error | null = null

  private constructor(
    private readonly worker: Worker,
    private readonly exited: Promise<void>,
  ) {
    worker.on('message', (m: { id: number; signatures?: Uint8Array; error?: string }) => {
      const waiting = this.sent.get(m.id)
      if (!waiting) return
      this.sent.delete(m.id)
      if (!m.signatures) {
        const err = new Error(m.error ?? 'signing thread failed')
        for (const w of waiting) w.reject(err)
        return
      }
      const all = Buffer.from(m.signatures.buffer, m.signatures.byteOffset, m.signatures.byteLength)
      for (let i = 0; i < waiting.length; i++) waiting[i]!.resolve(all.subarray(64 * i, 64 * i + 64))
    })
    const fail = (err: Error): void => {
      this.failure ??= err
      for (const waiting of this.sent.values()) for (const w of waiting) w.reject(this.failure)
      this.sent.clear()
    }
    worker.on('error', fail)
    void exited.then(() => fail(new Error('signing thread exited')))
  }

  /** Starts the thread; resolves once it runs. */
  static async start(): Promise<SigningThread> {
    const require = createRequire(import.meta.url)
    let sodium: string | null = null
    try {
      sodium = require.resolve('sodium-native')
    } catch {
      /* node:crypto in the thread */
    }
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { sodium } })
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
    await new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve())
      worker.once('error', reject)
      void exited.then(() => reject(new Error('signing thread exited before it was ready')))
    })
    worker.unref()
    return new SigningThread(worker, exited)
  }

  get alive(): boolean {
    return this.failure === null
  }

  /**
   * `inPlace` with its `signAsync` on this thread: the thread gets its own
   * copy of the key from `der` (PKCS #8), which the caller still zeroes.
   * `sign` (synchronous callers) stays in place; `destroy` wipes both.
   */
  signer(kid: string, der: Buffer, inPlace: Ed25519Signer): Ed25519Signer {
    const copy = new Uint8Array(der)
    this.worker.postMessage({ op: 'key', kid, der: copy }, [copy.buffer])
    return {
      backend: inPlace.backend,
      publicX: inPlace.publicX,
      sign: (message) => inPlace.sign(message),
      signAsync: (message) => (this.alive ? this.sign(kid, message).catch(() => inPlace.signAsync(message)) : inPlace.signAsync(message)),
      destroy: () => {
        inPlace.destroy()
        if (this.alive) this.worker.postMessage({ op: 'forget', kid })
      },
    }
  }

  private sign(kid: string, message: Buffer): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      let batch = this.batches.get(kid)
      if (!batch) {
        batch = { kid, inputs: [], waiting: [] }
        this.batches.set(kid, batch)
      }
      batch.inputs.push(message.toString('latin1'))
      batch.waiting.push({ resolve, reject })
      if (!this.scheduled) {
        this.scheduled = true
        setImmediate(() => this.flush())
      }
    })
  }

  private flush(): void {
    this.scheduled = false
    const batches = this.batches
    this.batches = new Map()
    for (const b of batches.values()) {
      if (this.failure) {
        for (const w of b.waiting) w.reject(this.failure)
        continue
      }
      const id = this.nextId++
      this.sent.set(id, b.waiting)
      this.worker.postMessage({ op: 'sign', id, kid: b.kid, inputs: b.inputs })
    }
  }

  /** Wipes the thread's keys and stops it. */
  async close(): Promise<void> {
    if (this.alive) {
      this.worker.ref()
      this.worker.postMessage({ op: 'close' })
      await Promise.race([this.exited, new Promise((r) => setTimeout(r, 2000).unref())])
    }
    if (this.worker.threadId !== -1) await this.worker.terminate()
    await this.exited
  }
}
