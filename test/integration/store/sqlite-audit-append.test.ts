import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openSqliteStore } from '../../../src/store/sqlite/index.js'
import type { AuditEvent } from '../../../src/store/types.js'

function event(chainId: string, seq: number): Omit<AuditEvent, 'id'> {
  return {
    chainId,
    chainSeq: seq,
    ts: 1_764_390_000_000 + seq,
    type: seq % 2 ? 'token.issued' : 'auth.failed',
    tenant: seq % 3 ? 'acme' : null,
    actor: `agent:acme/${seq}`,
    subject: `jti-${seq}`,
    data: { seq, aud: ['x'], nested: { b: 1, a: [seq] } },
    prevHash: `p${seq}`,
    hash: `h${seq}`,
  }
}

test('SQLite audit append: batches spanning several multi-row INSERTs return the ids the rows got, in order', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-sqlite-audit-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const store = await openSqliteStore(join(dir, 'a.db'))
  t.after(() => store.close())
  let seq = 0
  const written: Array<{ id: number; e: Omit<AuditEvent, 'id'> }> = []
  // 1, 31, 32, 33, 75 and 100 rows: single rows, exact chunks, a chunk plus one, several chunks with a remainder.
  for (const size of [1, 31, 32, 33, 75, 100]) {
    const batch = Array.from({ length: size }, () => event('cp-a', ++seq))
    const ids = await store.audit.append(batch)
    assert.equal(ids.length, size)
    for (const [i, e] of batch.entries()) written.push({ id: ids[i]!, e })
  }
  // Another chain in between, so ids are not simply chain_seq.
  await store.audit.append([event('cp-b', 1)])
  const more = Array.from({ length: 40 }, () => event('cp-a', ++seq))
  const moreIds = await store.audit.append(more)
  for (const [i, e] of more.entries()) written.push({ id: moreIds[i]!, e })

  const chain = await store.audit.chain('cp-a', 0, 10_000)
  assert.equal(chain.length, written.length)
  assert.deepEqual(
    chain,
    written.map(({ id, e }) => ({ ...e, id })),
  )
  assert.equal(new Set(written.map((w) => w.id)).size, written.length)
})

test('SQLite audit append: a failing row in a later chunk leaves the whole batch unwritten', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-sqlite-audit-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const store = await openSqliteStore(join(dir, 'a.db'))
  t.after(() => store.close())
  await store.audit.append([event('cp-a', 1)])
  // Row 41 repeats (cp-a, 1): the second INSERT of this batch fails.
  const batch = Array.from({ length: 50 }, (_, i) => event('cp-a', i === 40 ? 1 : i + 2))
  await assert.rejects(store.audit.append(batch))
  assert.deepEqual(
    (await store.audit.chain('cp-a', 0, 100)).map((e) => e.chainSeq),
    [1],
  )
  const ids = await store.audit.append([event('cp-a', 2)])
  assert.equal((await store.audit.chain('cp-a', 0, 100))[1]!.id, ids[0])
})
