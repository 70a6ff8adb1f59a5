import { test } from 'node:test'
import assert from 'node:assert/strict'
import { auditRoutes, createAuditWriter } from '../../../src/control-plane/audit/index.js'
import { createKeyManager } from '../../../src/control-plane/keys/index.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { adminToken, deferrer, depsFor, listen, logger, manualClock, tempSqlite, testConfig } from '../../unit/keys/fixture.js'

test('GET /admin/v1/audit filters, pages with next_cursor, keeps tenant admins in their tenant, and refuses bad parameters', async (t) => {
  const defer = deferrer(t)
  const { store, cleanup } = await tempSqlite()
  defer(cleanup)
  const config = testConfig()
  const clock = manualClock()
  const keys = await createKeyManager({ config, store, clock, logger, metrics: new Metrics() })
  defer(() => keys.stop())
  const audit = await createAuditWriter({ store, keys, clock, logger, chainId: 'cp-q', checkpointIntervalMs: 60_000 })
  defer(() => audit.close())
  const t0 = clock.now()
  for (let i = 0; i < 5; i++) {
    clock.advance(1000)
    await audit.append({ type: 'token.issued', tenant: 'acme', actor: 'agent:acme/bot', subject: `jti-a${i}`, data: { i } })
    await audit.append({ type: 'token.issued', tenant: 'globex', actor: 'agent:globex/bot', subject: `jti-g${i}`, data: { i } })
  }
  await audit.append({ type: 'auth.failed', tenant: 'acme', data: { reason: 'bad secret' } })
  const deps = depsFor({ config, store, keys, audit, clock })
  const { app, url } = await listen(config, [(a) => auditRoutes(a, deps)])
  defer(() => app.close())
  const global = await adminToken(store, null)
  const acme = await adminToken(store, 'acme')
  const get = async (qs: string, token = global) => {
    const res = await fetch(`${url}/admin/v1/audit${qs}`, { headers: { authorization: `Bearer ${token}` } })
    return { status: res.status, body: (await res.json()) as { events: Array<Record<string, unknown>>; next_cursor: string | null; error?: string } }
  }

  const all = await get('')
  assert.equal(all.status, 200)
  assert.equal(all.body.events.length, 11)
  assert.equal(all.body.next_cursor, null)
  assert.deepEqual(Object.keys(all.body.events[0]!).sort(), [
    'actor',
    'chain_id',
    'chain_seq',
    'data',
    'hash',
    'id',
    'prev_hash',
    'subject',
    'tenant',
    'ts_ms',
    'type',
  ])

  // Paging: limit + cursor walk the same events in order, without repeats.
  const seen: unknown[] = []
  let cursor: string | null = ''
  for (let guard = 0; cursor !== null && guard < 10; guard++) {
    const page = await get(`?limit=4${cursor ? `&cursor=${cursor}` : ''}`)
    assert.equal(page.status, 200)
    seen.push(...page.body.events.map((e) => e.id))
    cursor = page.body.next_cursor
  }
  assert.deepEqual(
    seen,
    all.body.events.map((e) => e.id),
  )

  assert.deepEqual(
    (await get('?type=auth.failed')).body.events.map((e) => e.type),
    ['auth.failed'],
  )
  assert.equal((await get('?tenant=globex')).body.events.length, 5)
  assert.deepEqual(
    (await get(`?since=${(t0 + 4000) / 1000}&tenant=globex`)).body.events.map((e) => (e.data as { i: number }).i),
    [3, 4],
  )
  assert.equal((await get(`?since=${new Date(t0 + 4000).toISOString()}&tenant=globex`)).body.events.length, 2)

  // A tenant admin sees only its own tenant, and naming another is refused.
  const mine = await get('', acme)
  assert.equal(mine.status, 200)
  assert.ok(mine.body.events.length === 6 && mine.body.events.every((e) => e.tenant === 'acme'))
  const other = await get('?tenant=globex', acme)
  assert.equal(other.status, 403)
  assert.equal(other.body.error, 'forbidden')
  assert.equal((await fetch(`${url}/admin/v1/audit`)).status, 401)

  for (const qs of [
    '?limit=0',
    '?limit=1001',
    '?limit=abc',
    '?cursor=-1',
    '?since=yesterday',
    // Epoch seconds: a millisecond time is refused rather than read as a date 50,000 years ahead.
    `?since=${t0}`,
    // A cursor is an event id: the (ts, id) form of pages with since before migration 15 is refused.
    '?since=0&cursor=1700000000000.5',
    '?cursor=1700000000000.5',
    '?type=%3Cscript%3E',
    // Types are matched exactly: a wildcard is refused rather than silently matching nothing.
    '?type=token.*',
    `?tenant=${'x'.repeat(200)}`,
    '?limit=1&limit=2',
    '?bogus=1',
  ]) {
    const r = await get(qs)
    assert.equal(r.status, 400, qs)
    assert.equal(r.body.error, 'invalid_request', qs)
  }
})

test('GET /admin/v1/audit with since: every event at or after it once, in id order, though the writers disagree on the time', async (t) => {
  const defer = deferrer(t)
  const { store, cleanup } = await tempSqlite()
  defer(cleanup)
  const config = testConfig()
  const clock = manualClock()
  // A second control plane whose clock runs 5 s behind: its events reach the log later in id order than their ts says.
  const behind = { now: () => clock.now() - 5000 }
  const keys = await createKeyManager({ config, store, clock, logger, metrics: new Metrics() })
  defer(() => keys.stop())
  const a = await createAuditWriter({ store, keys, clock, logger, chainId: 'cp-a', checkpointIntervalMs: 60_000 })
  const b = await createAuditWriter({ store, keys, clock: behind, logger, chainId: 'cp-b', checkpointIntervalMs: 60_000 })
  defer(() => Promise.all([a.close(), b.close()]))
  const t0 = clock.now()
  for (let i = 0; i < 12; i++) {
    clock.advance(1000)
    await (i % 2 ? b : a).append({ type: 'token.issued', tenant: 'acme', actor: 'agent:acme/bot', subject: `jti-${i}`, data: { i } })
  }
  const deps = depsFor({ config, store, keys, audit: a, clock })
  const { app, url } = await listen(config, [(x) => auditRoutes(x, deps)])
  defer(() => app.close())
  const global = await adminToken(store, null)
  const get = async (qs: string) => {
    const res = await fetch(`${url}/admin/v1/audit${qs}`, { headers: { authorization: `Bearer ${global}` } })
    return { status: res.status, body: (await res.json()) as { events: Array<{ id: number; ts_ms: number; data: { i: number } }>; next_cursor: string | null } }
  }
  const since = (t0 + 4000) / 1000
  const everything = (await get('?limit=1000')).body.events
  const want = everything.filter((e) => e.ts_ms >= since * 1000)
  assert.ok(
    everything.some((e) => e.ts_ms < since * 1000 && e.id > want[0]!.id),
    'the log has events before since written after events at or after it',
  )
  for (const order of ['asc', 'desc']) {
    const seen: number[] = []
    let cursor: string | null = ''
    for (let guard = 0; cursor !== null && guard < 20; guard++) {
      const page = await get(`?since=${since}&order=${order}&limit=3${cursor ? `&cursor=${cursor}` : ''}`)
      assert.equal(page.status, 200)
      seen.push(...page.body.events.map((e) => e.id))
      cursor = page.body.next_cursor
    }
    const ids = want.map((e) => e.id)
    assert.deepEqual(seen, order === 'asc' ? ids : ids.reverse(), order)
  }
  // The same with the since given as an RFC 3339 date-time.
  assert.deepEqual(
    (await get(`?since=${new Date(since * 1000).toISOString()}&limit=1000`)).body.events.map((e) => e.id),
    want.map((e) => e.id),
  )
})
