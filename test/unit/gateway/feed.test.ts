import { after, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server, type ServerResponse } from 'node:http'
import { ControlPlaneClient } from '../../../src/gateway/control-plane-client.js'
import { AckReporter } from '../../../src/gateway/feed/acks.js'
import { SseFeed } from '../../../src/gateway/feed/sse.js'
import { GatewayState, agentKey } from '../../../src/gateway/state.js'
import { MemoryDenyList } from '../../../src/store/memory/deny-list.js'
import { systemClock } from '../../../src/lib/clock.js'
import { silentLogger } from '../../../src/observability/logger.js'
import { Metrics } from '../../../src/observability/metrics.js'
import type { FeedSnapshot } from '../../../src/control-plane/feed/events.js'
import type { PolicyCompiler, PolicyEngine } from '../../../src/policy/types.js'
import type { Revocation } from '../../../src/store/types.js'

const rev = (seq: number, value: string): Revocation => ({
  seq,
  type: 'jti',
  value,
  tenant: 't',
  agentId: null,
  reason: null,
  createdAt: Date.now(),
  expiresAt: Date.now() + 60_000,
})
const snapshot = (seq: number, revocations: Revocation[]): FeedSnapshot => ({
  seq,
  revocations,
  agents: [{ tenant: 't', agentId: 'a', capabilityHash: 'h'.repeat(43) }],
  policies: [],
  generatedAt: Date.now(),
})

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`
}

const stubCompiler = (fail: (cedar: string) => boolean): PolicyCompiler => ({
  compile: (b) => {
    if (fail(b.cedar)) throw new Error('bad policy')
    const engine: PolicyEngine = {
      evaluate: () => ({ decision: 'allow', reasons: [b.cedar], policyIds: [], obligations: [], risk: 'normal', policyVersion: b.version, mode: b.mode }),
    }
    return engine
  },
})

function newState(
  compiler: PolicyCompiler = stubCompiler(() => false),
  onRevocationsApplied?: (seq: number) => void,
): { state: GatewayState; deny: MemoryDenyList } {
  const deny = new MemoryDenyList()
  const state = new GatewayState({
    denyList: deny,
    compiler,
    logger: silentLogger(),
    metrics: new Metrics(),
    clock: systemClock,
    ...(onRevocationsApplied ? { onRevocationsApplied } : {}),
  })
  return { state, deny }
}

describe('SseFeed against a small real SSE server', () => {
  const servers: Server[] = []
  after(() => {
    for (const s of servers) {
      s.closeAllConnections()
      s.close()
    }
  })

  test('loads the snapshot, applies events, and after a dropped stream reconnects and reloads the full list', async () => {
    let connections = 0
    let auth: string | undefined
    const open: ServerResponse[] = []
    const server = createServer((req, res) => {
      auth = req.headers.authorization
      connections++
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      open.push(res)
      if (connections === 1) {
        res.write(`event: snapshot\ndata: ${JSON.stringify(snapshot(1, [rev(1, 'j1')]))}\n\n`)
        res.write(`event: revocation\nid: 2\ndata: ${JSON.stringify({ kind: 'revocation', revocation: rev(2, 'j2') })}\n\n`)
        // Dropped shortly after: the gateway must keep the list and reconnect.
        setTimeout(() => res.destroy(), 50)
      } else {
        res.write(`event: snapshot\ndata: ${JSON.stringify(snapshot(3, [rev(1, 'j1'), rev(3, 'j3')]))}\n\n`)
      }
    })
    servers.push(server)
    const url = await listen(server)
    const { state, deny } = newState()
    const feed = new SseFeed({ client: new ControlPlaneClient(url, 'secret-token'), state, logger: silentLogger(), backoffInitialMs: 10, backoffMaxMs: 50 })
    feed.start()
    await feed.ready
    assert.equal(auth, 'Bearer secret-token')
    assert.equal(state.snapshotLoaded, true)
    assert.equal(state.agentHash(agentKey('t', 'a')), 'h'.repeat(43))
    const deadline = Date.now() + 5_000
    while (connections < 2 || deny.lastSeq < 3) {
      if (Date.now() > deadline) throw new Error('no reconnect')
      await new Promise((r) => setTimeout(r, 10))
    }
    assert.equal(deny.size, 2, 'the reconnect reloaded the full list (j2 expired from it)')
    assert.ok(deny.match({ jti: 'j3', tenant: 't', agentId: 'a', clientId: 'c', kid: 'k', iat: 0 }))
    assert.equal(state.feedIsConnected, true)
    await feed.close()
    assert.equal(state.feedIsConnected, false)
  })

  test('a malformed event forces a reconnect (and a fresh snapshot) instead of being skipped', async () => {
    let connections = 0
    const server = createServer((_req, res) => {
      connections++
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write(`event: snapshot\ndata: ${JSON.stringify(snapshot(1, []))}\n\n`)
      if (connections === 1) res.write('event: revocation\ndata: {"kind":"revocation","revocation":{"seq":"x"}}\n\n')
    })
    servers.push(server)
    const url = await listen(server)
    const { state } = newState()
    const feed = new SseFeed({ client: new ControlPlaneClient(url, 't'), state, logger: silentLogger(), backoffInitialMs: 10, backoffMaxMs: 50 })
    feed.start()
    const deadline = Date.now() + 5_000
    while (connections < 2) {
      if (Date.now() > deadline) throw new Error('no reconnect after a malformed event')
      await new Promise((r) => setTimeout(r, 10))
    }
    await feed.close()
  })
})

describe('GatewayState policies', () => {
  test('a bundle that fails to compile keeps the previous one; a first bad bundle denies', () => {
    const { state } = newState(stubCompiler((c) => c.startsWith('bad')))
    state.applyEvent({ kind: 'policy', policy: { tenant: 't', active: { id: 'p1', version: 'v1', cedar: 'good-1', mode: 'enforce' }, candidate: null } })
    assert.equal(state.policyFor('t')?.version, 'v1')
    state.applyEvent({ kind: 'policy', policy: { tenant: 't', active: { id: 'p2', version: 'v2', cedar: 'bad', mode: 'enforce' }, candidate: null } })
    assert.equal(state.policyFor('t')?.version, 'v1', 'kept the previous bundle')
    state.applyEvent({ kind: 'policy', policy: { tenant: 'u', active: { id: 'p3', version: 'v3', cedar: 'bad', mode: 'enforce' }, candidate: null } })
    const r = state.policyFor('u')!.engine.evaluate({
      principal: { tenant: 'u', agentId: 'a', clientId: 'c', scopes: [], capabilities: ['x'] },
      action: 'x',
      resource: null,
      params: {},
      time: 0,
      clientAddress: null,
      override: false,
    })
    assert.equal(r.decision, 'deny')
    state.applyEvent({ kind: 'policy', policy: { tenant: 't', active: null, candidate: null } })
    assert.equal(state.policyFor('t'), undefined, 'no active bundle: strict engine')
  })

  test('revocation events report the applied seq for acknowledgement', () => {
    const seen: number[] = []
    const { state } = newState(undefined, (s) => seen.push(s))
    state.applySnapshot(snapshot(5, []))
    state.applyEvent({ kind: 'revocation', revocation: rev(6, 'x') })
    assert.deepEqual(seen, [5, 6])
  })
})

describe('AckReporter', () => {
  test('coalesces a burst of applied seqs into a few POSTs that end with the last one', async () => {
    const posts: Array<{ gateway_id: string; seq: number }> = []
    const server = createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => {
        body += c.toString()
      })
      req.on('end', () => {
        posts.push(JSON.parse(body) as { gateway_id: string; seq: number })
        res.writeHead(204).end()
      })
    })
    const url = await listen(server)
    const acks = new AckReporter(new ControlPlaneClient(url, 't'), 'gw-1', silentLogger(), 100)
    try {
      for (let i = 1; i <= 50; i++) acks.notify(i)
      const deadline = Date.now() + 5_000
      while (acks.acknowledged < 50) {
        if (Date.now() > deadline) throw new Error('last seq never acknowledged')
        await new Promise((r) => setTimeout(r, 10))
      }
      assert.ok(posts.length <= 3, `${posts.length} posts for 50 notifications`)
      assert.deepEqual(posts.at(-1), { gateway_id: 'gw-1', seq: 50 })
      assert.equal(posts[0]!.seq, 1, 'the first one goes out at once')
    } finally {
      await acks.close()
      server.closeAllConnections()
      server.close()
    }
  })
})
