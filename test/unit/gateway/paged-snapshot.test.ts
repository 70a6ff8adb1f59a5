/**
 * The paged feed snapshot a starting gateway loads (issue 14, ready within
 * 2 s with 100,000 revocations): tuple pages (`?v=3`) and the object pages
 * of a control plane that only knows `?v=2` give the same snapshot; lines
 * split anywhere across chunks are read whole; malformed entries, a short
 * stream and an oversized line are refused. Served by a small real HTTP
 * server; the end-to-end path against a real control plane is
 * test/integration/control-plane/feed.test.ts and feed-scale.test.ts.
 */
import { after, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import { ControlPlaneClient } from '../../../src/gateway/control-plane-client.js'
import { fetchPagedSnapshot } from '../../../src/gateway/feed/paged-snapshot.js'
import { parseAgentEntry, parseRevocationEntry } from '../../../src/gateway/feed/parse.js'

const now = Date.now()
const BEGIN = { generatedAt: now, policies: [{ tenant: 't', active: null, candidate: null }], keys: { current: 'k1', kids: ['k1'], revoked: [] } }
const revocations = Array.from({ length: 2500 }, (_, i) => ({
  seq: i + 1,
  type: i % 2 === 0 ? ('jti' as const) : ('agent' as const),
  value: `v-${i}`,
  tenant: 't',
  agentId: null,
  reason: null,
  createdAt: now,
  expiresAt: now + 60_000,
}))
const agents = Array.from({ length: 1500 }, (_, i) => ({ tenant: 't', agentId: `a-${i}`, capabilityHash: i % 7 === 0 ? null : `h${i}` }))
const asTuples = (): string[] => [
  JSON.stringify({ begin: BEGIN }),
  JSON.stringify({ revocations: revocations.slice(0, 1000).map((r) => [r.seq, r.type, r.value, r.tenant, r.agentId, r.createdAt, r.expiresAt]) }),
  JSON.stringify({ revocations: revocations.slice(1000).map((r) => [r.seq, r.type, r.value, r.tenant, r.agentId, r.createdAt, r.expiresAt]) }),
  JSON.stringify({ agents: agents.map((a) => [a.tenant, a.agentId, a.capabilityHash]) }),
  JSON.stringify({ end: { seq: 2500, revocations: revocations.length, agents: agents.length, cursor: null } }),
]
const asObjects = (): string[] => [
  JSON.stringify({ begin: BEGIN }),
  JSON.stringify({ revocations }),
  JSON.stringify({ agents }),
  JSON.stringify({ end: { seq: 2500, revocations: revocations.length, agents: agents.length, cursor: null } }),
]

describe('paged feed snapshot (NDJSON)', () => {
  const servers: Server[] = []
  after(() => {
    for (const s of servers) {
      s.closeAllConnections()
      s.close()
    }
  })

  /** Serves `body` as NDJSON in chunks of `chunk` bytes (each written on its own tick); records the query. */
  async function serve(body: string, chunk: number, seen: string[] = []): Promise<ControlPlaneClient> {
    const server = createServer(async (req, res) => {
      seen.push(req.url ?? '')
      res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8' })
      const bytes = Buffer.from(body)
      for (let i = 0; i < bytes.length; i += chunk) {
        res.write(bytes.subarray(i, i + chunk))
        await new Promise((r) => setImmediate(r))
      }
      res.end()
    })
    servers.push(server)
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    return new ControlPlaneClient(`http://127.0.0.1:${(server.address() as { port: number }).port}`, 'gw-token')
  }

  test('tuple pages (asked for with v=3) and object pages load the same snapshot, whatever the chunking', async () => {
    const seen: string[] = []
    const loads = []
    for (const chunk of [1 << 20, 4096, 7]) {
      loads.push(await fetchPagedSnapshot(await serve(`${asTuples().join('\n')}\n`, chunk, seen)))
      loads.push(await fetchPagedSnapshot(await serve(asObjects().join('\n'), chunk, seen)))
    }
    assert.ok(seen.every((u) => u === '/admin/v1/feed/snapshot?paged=true&v=3'))
    for (const snap of loads) {
      assert.ok(snap)
      assert.equal(snap.seq, 2500)
      assert.deepEqual(snap.revocations, revocations)
      assert.deepEqual(snap.agents, agents)
      assert.deepEqual(snap.policies, BEGIN.policies)
      assert.deepEqual(snap.keys, BEGIN.keys)
    }
  })

  test('a malformed entry or a count that does not add up gives null; a stream cut before its end line rejects', async () => {
    const lines = asTuples()
    const badType = [...lines]
    badType[1] = JSON.stringify({ revocations: [[1, 'everything', 'x', 't', null, now, now + 1]] })
    const shortTuple = [...lines]
    shortTuple[3] = JSON.stringify({ agents: [['t', 'a-0']] })
    const wrongCount = [...lines]
    wrongCount[4] = JSON.stringify({ end: { seq: 2500, revocations: 2499, agents: agents.length } })
    const notJson = [...lines]
    notJson[2] = '{"revocations": [[1,'
    for (const body of [badType, shortTuple, wrongCount, notJson]) assert.equal(await fetchPagedSnapshot(await serve(body.join('\n'), 4096)), null)
    await assert.rejects(fetchPagedSnapshot(await serve(lines.slice(0, 4).join('\n'), 4096)), /incomplete/)
  })

  test('a line longer than 8 MiB is refused before it is buffered whole', async () => {
    const huge = `{"revocations": [${'0,'.repeat(4.5 * 1024 * 1024)}0]}`
    await assert.rejects(fetchPagedSnapshot(await serve(`${JSON.stringify({ begin: BEGIN })}\n${huge}\n`, 1 << 20)), /line too long/)
  })
})

describe('snapshot page entries', () => {
  test('tuples and objects validate alike; reason is not carried by tuples', () => {
    const r = revocations[0]!
    assert.deepEqual(parseRevocationEntry([r.seq, r.type, r.value, r.tenant, r.agentId, r.createdAt, r.expiresAt]), r)
    assert.deepEqual(parseRevocationEntry({ ...r, reason: 'kept in objects' }), { ...r, reason: 'kept in objects' })
    for (const bad of [
      [r.seq, 'nope', r.value, r.tenant, r.agentId, r.createdAt, r.expiresAt],
      [String(r.seq), r.type, r.value, r.tenant, r.agentId, r.createdAt, r.expiresAt],
      [r.seq, r.type, 5, r.tenant, r.agentId, r.createdAt, r.expiresAt],
      [r.seq, r.type, r.value, r.tenant, r.agentId, r.createdAt],
      [r.seq, r.type, r.value, r.tenant, r.agentId, r.createdAt, Number.POSITIVE_INFINITY],
      null,
      'jti',
    ])
      assert.equal(parseRevocationEntry(bad), null, JSON.stringify(bad))
    assert.deepEqual(parseAgentEntry(['t', 'a', null]), { tenant: 't', agentId: 'a', capabilityHash: null })
    assert.equal(parseAgentEntry(['t', 'a', 7]), null)
    assert.equal(parseAgentEntry(['t']), null)
  })
})
