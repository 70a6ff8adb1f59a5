import { test } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openSqliteStore } from '../../../src/store/sqlite/index.js'
import type { SqliteStore } from '../../../src/store/sqlite/store.js'
import type { AuditEvent } from '../../../src/store/types.js'

function event(seq: number): Omit<AuditEvent, 'id'> {
  return {
    chainId: 'cp',
    chainSeq: seq,
    ts: 1_764_390_000_000 + seq,
    type: 'token.issued',
    tenant: 'acme',
    actor: `agent:acme/${seq}`,
    subject: `jti-${seq}`,
    data: { pad: 'x'.repeat(2000), seq },
    prevHash: `p${seq}`,
    hash: `h${seq}`,
  }
}

async function waitFor(predicate: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 20))
  }
}

test(
  'SQLite checkpoints run on a worker thread: the WAL reaches the database file while the event loop is blocked, and close leaves no WAL ' + 'behind',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'aegis-sqlite-ckpt-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    const path = join(dir, 'a.db')
    const store = await openSqliteStore(path)
    assert.equal((store as SqliteStore).checkpointsOffThread, true)
    await waitFor(() => existsSync(`${path}-wal`))
    const before = statSync(path).size
    // About 2 MB of audit rows: committed to the WAL, not yet to the database file.
    for (let i = 0; i < 10; i++) await store.audit.append(Array.from({ length: 100 }, (_, j) => event(i * 100 + j + 1)))
    // Block this thread: only a checkpoint from another thread can grow the database file meanwhile.
    const until = Date.now() + 500
    while (Date.now() < until && statSync(path).size <= before + 1_000_000) {
      /* spin */
    }
    assert.ok(statSync(path).size > before + 1_000_000, `database file grew from ${before} to ${statSync(path).size} bytes`)
    await store.close()
    assert.equal(existsSync(`${path}-wal`), false, 'the last connection to close folds the WAL back')
    const again = await openSqliteStore(path)
    t.after(() => again.close())
    assert.equal((await again.audit.chain('cp', 0, 10_000)).length, 1000)
  },
)

test('an in-memory SQLite store starts no checkpoint worker', async () => {
  const store = await openSqliteStore(':memory:')
  assert.equal((store as SqliteStore).checkpointsOffThread, false)
  await store.close()
})

test('under writes that never pause, the WAL still starts over: it stays near the restart mark instead of growing with every commit', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-sqlite-walcap-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'a.db')
  const store = await openSqliteStore(path)
  t.after(() => store.close())
  assert.equal((store as SqliteStore).checkpointsOffThread, true)
  // About 100 MB of commits, one batch per turn of the event loop as the audit writer does: a checkpoint from the worker
  // never finds the log still, so only the finishing pass with writes held (store.ts finishCheckpoint) lets it restart.
  let largest = 0
  let seq = 0
  // Each restart writes a new WAL header with the checkpoint sequence (bytes 12–15) one higher.
  const restarts = new Set<number>()
  const header = Buffer.alloc(16)
  for (let batch = 0; batch < 1600; batch++) {
    await store.audit.append(Array.from({ length: 32 }, () => event(++seq)))
    await new Promise((r) => setImmediate(r))
    if (batch % 10 === 0 && existsSync(`${path}-wal`)) {
      largest = Math.max(largest, statSync(`${path}-wal`).size)
      const fd = openSync(`${path}-wal`, 'r')
      try {
        if (readSync(fd, header, 0, 16, 0) === 16) restarts.add(header.readUInt32BE(12))
      } finally {
        closeSync(fd)
      }
    }
  }
  // Measured on a quiet machine: 6 or more restarts and a file of 30–48 MB (the log restarts at 16–40 MB at this write
  // rate, and journal_size_limit trims the file to 32 MiB at each restart); under a loaded CI run, 74–135 MB. Without the
  // finishing pass: no restart and 500 MB.
  console.log(
    `# ${((seq * 2_000) / 1e6).toFixed(0)} MB of rows written; the WAL restarted ${restarts.size - 1} times; largest file ` +
      `${(largest / 1e6).toFixed(1)} MB`,
  )
  assert.ok(largest > 0)
  assert.ok(restarts.size >= 3, `the WAL restarted ${restarts.size - 1} times`)
  assert.ok(largest < 256 * 1024 * 1024, `the WAL reached ${largest} bytes`)
})

test('the checkpoint that lets the WAL restart runs on the worker while writes wait, off the event loop; they then land in order', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-sqlite-finish-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'a.db')
  const store = (await openSqliteStore(path)) as unknown as SqliteStore & Awaited<ReturnType<typeof openSqliteStore>>
  t.after(() => store.close())
  assert.equal(store.appendOffThread, true)
  await store.tenants.create({ id: 'acme', name: 'Acme', requireAttestation: false, createdAt: 1 })
  await store.audit.append(Array.from({ length: 50 }, (_, j) => event(j + 1)))
  const walSeq = (): number => {
    const fd = openSync(`${path}-wal`, 'r')
    try {
      const header = Buffer.alloc(16)
      readSync(fd, header, 0, 16, 0)
      return header.readUInt32BE(12)
    } finally {
      closeSync(fd)
    }
  }
  const seqBefore = walSeq()
  const order: string[] = []
  let loopTurns = 0
  const ticker = setInterval(() => loopTurns++, 0)
  const finished = store.finishCheckpoint().then((ok) => {
    order.push('checkpoint')
    return ok
  })
  // Handed over while the worker copies: an owner write, an audit batch, another owner write, and a read.
  const writes = [
    store.tenants.create({ id: 'globex', name: 'Globex', requireAttestation: false, createdAt: 2 }).then(() => order.push('owner write 1')),
    store.audit.append([event(51)]).then(() => order.push('audit batch')),
    store.tenants.create({ id: 'initech', name: 'Initech', requireAttestation: false, createdAt: 3 }).then(() => order.push('owner write 2')),
  ]
  const read = store.tenants.get('acme').then((r) => {
    order.push('read')
    return r
  })
  assert.equal(await finished, true, 'the worker copied every frame')
  await Promise.all(writes)
  clearInterval(ticker)
  assert.equal((await read)?.name, 'Acme')
  // The read is answered while writes wait; the writes land after the checkpoint, in the order they came.
  assert.deepEqual(order, ['read', 'checkpoint', 'owner write 1', 'audit batch', 'owner write 2'])
  assert.ok(loopTurns > 0, 'the event loop ran while the worker copied')
  // Nothing committed between the pass and the first held write: that write started the log over.
  assert.equal(walSeq(), seqBefore + 1)
  assert.deepEqual((await store.tenants.list()).map((x) => x.id).sort(), ['acme', 'globex', 'initech'])
  assert.equal((await store.audit.chain('cp', 0, 100)).length, 51)
})

test("a short-lived store (the CLI's) starts neither thread; its writes land and closing folds the WAL back", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-sqlite-short-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'a.db')
  const store = (await openSqliteStore(path, { threads: false })) as unknown as SqliteStore & Awaited<ReturnType<typeof openSqliteStore>>
  assert.equal(store.checkpointsOffThread, false)
  assert.equal(store.appendOffThread, false)
  await store.audit.append(Array.from({ length: 20 }, (_, j) => event(j + 1)))
  await store.close()
  assert.equal(existsSync(`${path}-wal`), false)
  const again = await openSqliteStore(path)
  t.after(() => again.close())
  assert.equal((await again.audit.chain('cp', 0, 100)).length, 20)
})
