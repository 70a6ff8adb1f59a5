import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { FeedLog } from '../../../src/control-plane/feed/log.js'
import type { FeedEvent } from '../../../src/control-plane/feed/events.js'

const ev = (i: number): FeedEvent => ({ kind: 'agent', agent: { tenant: 't', agentId: `a${i}`, capabilityHash: 'h'.repeat(43) } })

describe('FeedLog', () => {
  test('positions are contiguous from 1; after() reads in order and in batches', () => {
    const log = new FeedLog()
    assert.equal(log.last, 0)
    assert.deepEqual(log.after(0, 10), [])
    for (let i = 1; i <= 5; i++) assert.equal(log.append(ev(i)).pos, i)
    assert.deepEqual(
      log.after(0, 2)!.map((e) => e.pos),
      [1, 2],
    )
    assert.deepEqual(
      log.after(2, 10)!.map((e) => e.pos),
      [3, 4, 5],
    )
    assert.deepEqual(log.after(5, 10), [])
    assert.equal(JSON.parse(log.after(4, 1)![0]!.json).agent.agentId, 'a5')
  })

  test('a cursor resumes only in this log, only while the entry after it is held', () => {
    const log = new FeedLog({ maxEntries: 3 })
    for (let i = 1; i <= 3; i++) log.append(ev(i))
    assert.equal(log.resumable(log.cursor(0)), 0, 'nothing dropped yet: resumable from the start')
    assert.equal(log.resumable(log.cursor(3)), 3)
    log.append(ev(4))
    assert.equal(log.first, 2)
    assert.equal(log.resumable(log.cursor(0)), undefined, 'entry 1 was dropped')
    assert.equal(log.after(0, 10), null)
    assert.equal(log.resumable(log.cursor(1)), 1)
    assert.equal(log.resumable(log.cursor(9)), undefined, 'a position this log never reached')
    assert.equal(log.resumable(new FeedLog().cursor(1)), undefined, "another process's cursor")
    for (const junk of [undefined, '', '12', 'x.y', `${log.epoch}.-1`, `${log.epoch}.1.2`]) assert.equal(log.resumable(junk), undefined, String(junk))
  })

  test('bounded in bytes as well as entries, keeping at least the newest', () => {
    const log = new FeedLog({ maxBytes: 300 })
    for (let i = 1; i <= 10; i++) log.append(ev(i))
    assert.ok(log.size >= 1 && log.size < 10, `holds ${log.size}`)
    assert.equal(log.last, 10)
  })

  test('reset forgets everything: old cursors do not resume and readers fall off, even one caught up', () => {
    const log = new FeedLog()
    let woken = 0
    log.watch(() => woken++)
    log.append(ev(1))
    log.append(ev(2))
    const cursor = log.cursor(2)
    log.reset()
    assert.equal(woken, 3)
    assert.equal(log.resumable(cursor), undefined)
    assert.equal(log.after(2, 10), null, 'a reader caught up before the gap must reload')
    const e = log.append(ev(3))
    assert.deepEqual(
      log.after(e.pos - 1, 10)!.map((x) => x.pos),
      [e.pos],
    )
  })
})
