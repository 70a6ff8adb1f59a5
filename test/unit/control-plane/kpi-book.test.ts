// The token endpoint's KPI counting keeps each tenant's counter keys for the
// current 10-second slot: counts must still land in the right slot when the
// clock moves on, for every tenant and the all-tenant figures, across
// flushes to the store.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { KpiBook } from '../../../src/control-plane/admin/kpis.js'
import { ManualClock } from '../../../src/lib/clock.js'
import { openSqliteStore } from '../../../src/store/index.js'

test('issuance counts land in their own slot and tenant, before and after a flush and a slot change', async () => {
  const store = await openSqliteStore(':memory:')
  // On a slot boundary, so the history's last buckets are exactly these slots.
  const clock = new ManualClock(1_700_000_000_000)
  const book = new KpiBook(store, clock)
  try {
    for (let i = 0; i < 3; i++) book.recordIssued(clock.now(), 300, 'acme')
    book.recordIssued(clock.now(), 60, 'beta')
    // A snapshot flushes the pending counts; counting goes on in the same slot afterwards.
    assert.equal((await book.snapshot(null)).tokens_issued, 4)
    book.recordIssued(clock.now() + 9_999, 300, 'acme')
    clock.advance(10_000)
    book.recordIssued(clock.now(), 120, 'acme')
    book.recordIssued(clock.now(), 120, 'acme')
    book.recordIssued(clock.now(), 60, 'beta')
    clock.advance(10_000)
    book.recordIssued(clock.now(), 600)

    const all = await book.snapshot(null, true)
    assert.deepEqual(all.history!.issued.slice(-3), [5, 3, 1])
    assert.equal(all.tokens_issued, 9)
    assert.equal(all.avg_token_lifetime_seconds, Math.round(((4 * 300 + 60 + 2 * 120 + 60 + 600) / 9) * 100) / 100)
    const acme = await book.snapshot('acme', true)
    assert.deepEqual(acme.history!.issued.slice(-3), [4, 2, 0])
    assert.deepEqual(acme.history!.avg_token_lifetime_seconds.slice(-3), [300, 120, 0])
    assert.equal(acme.tokens_issued, 6)
    const beta = await book.snapshot('beta', true)
    assert.deepEqual(beta.history!.issued.slice(-3), [1, 1, 0])
    assert.equal(beta.tokens_issued, 2)
  } finally {
    await book.close()
    await store.close()
  }
})
