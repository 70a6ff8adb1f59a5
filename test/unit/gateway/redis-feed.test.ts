/**
 * The Redis feed's reconnect paths against real redis-server processes
 * (private ports, never the shared Redis). Each of the gateway's two
 * connections goes through its own TCP relay, so a test decides which one
 * comes back first after a restart.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { Redis } from 'ioredis'
import { ControlPlaneClient } from '../../../src/gateway/control-plane-client.js'
import { RedisFeed } from '../../../src/gateway/feed/redis.js'
import { parseSnapshot } from '../../../src/gateway/feed/parse.js'
import { redisCommandConnection, redisSubscriberConnection } from '../../../src/gateway/redis-connections.js'
import { GatewayState } from '../../../src/gateway/state.js'
import { RedisFeedPublisher } from '../../../src/control-plane/feed/index.js'
import type { FeedSnapshot } from '../../../src/control-plane/feed/events.js'
import { MemoryDenyList } from '../../../src/store/memory/deny-list.js'
import { systemClock } from '../../../src/lib/clock.js'
import { silentLogger } from '../../../src/observability/logger.js'
import { Metrics } from '../../../src/observability/metrics.js'
import type { PolicyCompiler } from '../../../src/policy/types.js'
import type { Revocation } from '../../../src/store/types.js'
import { freeRestartablePort } from '../../helpers/ports.js'
import { PrivateRedis, skipWithoutRedisServer } from '../../helpers/redis-server.js'
import { TcpRelay } from '../../helpers/tcp-relay.js'

const noRedisServer = skipWithoutRedisServer()

const rev = (seq: number): Revocation => ({
  seq,
  type: 'jti',
  value: `jti-${seq}`,
  tenant: 't',
  agentId: null,
  reason: null,
  createdAt: Date.now(),
  expiresAt: Date.now() + 600_000,
})
const compiler: PolicyCompiler = {
  compile: () => {
    throw new Error('no policies in these tests')
  },
}

async function until(what: string, fn: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('RedisFeed reconnects by itself (private redis-server)', { skip: noRedisServer }, () => {
  let redis: PrivateRedis
  let server: Server
  let cpUrl: string
  /** What the control plane's snapshot holds (its database). */
  const held: Revocation[] = []
  /** While true the control plane answers 503 (down). */
  let cpDown = false
  let seq = 0
  const cleanups: Array<() => Promise<void> | void> = []

  before(async () => {
    redis = await PrivateRedis.start(await freeRestartablePort())
    server = createServer((req, res) => {
      if (req.url !== '/admin/v1/feed/snapshot') {
        res.writeHead(404).end()
        return
      }
      if (cpDown) {
        res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"temporarily_unavailable"}')
        return
      }
      const snap: FeedSnapshot = {
        seq: held.reduce((m, r) => Math.max(m, r.seq), 0),
        revocations: [...held],
        agents: [],
        policies: [],
        generatedAt: Date.now(),
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(snap))
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    cpUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  })
  after(async () => {
    for (const c of cleanups.reverse()) await c()
    server?.closeAllConnections()
    server?.close()
    await redis?.close()
  })

  /** A revocation the control plane stored (and, with `publish`, published on Redis). */
  async function revoke(publisher: RedisFeedPublisher | null): Promise<Revocation> {
    const r = rev(++seq)
    held.push(r)
    if (publisher) await publisher.publish({ kind: 'revocation', revocation: r })
    return r
  }

  async function follow(
    subUrl: string,
    cmdUrl: string,
    prefix: string,
  ): Promise<{ feed: RedisFeed; state: GatewayState; deny: MemoryDenyList; sub: Redis; cmd: Redis; publisher: RedisFeedPublisher }> {
    const deny = new MemoryDenyList()
    const state = new GatewayState({ denyList: deny, compiler, logger: silentLogger(), metrics: new Metrics(), clock: systemClock })
    const sub = redisSubscriberConnection(subUrl)
    const cmd = redisCommandConnection(cmdUrl, 500)
    sub.on('error', () => {})
    cmd.on('error', () => {})
    const client = new ControlPlaneClient(cpUrl, 'gw-token')
    const feed = new RedisFeed({
      subscriber: sub,
      command: cmd,
      state,
      logger: silentLogger(),
      fetchSnapshot: async () => parseSnapshot(await client.getJson('/admin/v1/feed/snapshot')),
      channel: `${prefix}aegis:feed`,
      hashKey: `${prefix}aegis:revocations`,
      backoffInitialMs: 50,
      backoffMaxMs: 500,
    })
    const publisher = await RedisFeedPublisher.open({ url: redis.url, logger: silentLogger(), prefix })
    cleanups.push(async () => {
      await feed.close()
      sub.disconnect()
      cmd.disconnect()
      await publisher.close()
    })
    return { feed, state, deny, sub, cmd, publisher }
  }

  const holds = (deny: MemoryDenyList, r: Revocation): boolean =>
    deny.match({ jti: r.value, tenant: 't', agentId: 'a', clientId: 'c', kid: 'k', iat: Math.floor(Date.now() / 1000) }) !== null

  test('subscriber ready before the command connection: the feed loads the full list once the command connection is up', async () => {
    const cmdPath = await TcpRelay.start(redis.port)
    cleanups.push(() => cmdPath.close())
    cmdPath.cut()
    const { feed, state, deny, sub, publisher } = await follow(redis.url, cmdPath.url, 'sub-first:')
    const inHash = await revoke(publisher)
    const inSnapshot = await revoke(null)
    feed.start()
    await until('subscriber ready', () => sub.status === 'ready')
    await pause(300)
    cmdPath.heal()
    await until('feed connected on the full list', () => state.feedIsConnected && holds(deny, inHash) && holds(deny, inSnapshot))
    await feed.ready
    const later = await revoke(publisher)
    await until('a revocation published afterwards is applied', () => holds(deny, later))
  })

  test('control plane down too: the subscriber first, then the command connection: the feed connects on the Redis hash', async () => {
    const cmdPath = await TcpRelay.start(redis.port)
    cleanups.push(() => cmdPath.close())
    cmdPath.cut()
    const { feed, state, deny, sub, cmd, publisher } = await follow(redis.url, cmdPath.url, 'hash-only:')
    const inHash = await revoke(publisher)
    cpDown = true
    try {
      feed.start()
      await until('subscriber ready', () => sub.status === 'ready')
      await pause(300)
      assert.equal(state.feedIsConnected, false, 'neither the snapshot nor the hash could be read yet')
      assert.notEqual(cmd.status, 'ready')
      cmdPath.heal()
      await until('feed connected on the hash', () => state.feedIsConnected && holds(deny, inHash))
      const later = await revoke(publisher)
      await until('a revocation published afterwards is applied', () => holds(deny, later))
    } finally {
      cpDown = false
    }
    await feed.ready
  })

  test('either connection first, over repeated Redis restarts: back on the complete list and following new revocations every time', async () => {
    const subPath = await TcpRelay.start(redis.port)
    const cmdPath = await TcpRelay.start(redis.port)
    cleanups.push(
      () => subPath.close(),
      () => cmdPath.close(),
    )
    const { feed, state, deny, sub, cmd, publisher } = await follow(subPath.url, cmdPath.url, 'flaps:')
    feed.start()
    await feed.ready
    await until('feed connected', () => state.feedIsConnected)
    for (let i = 0; i < 4; i++) {
      const subscriberFirst = i % 2 === 0
      const [first, second] = subscriberFirst ? [sub, cmd] : [cmd, sub]
      const late = subscriberFirst ? cmdPath : subPath
      await redis.stop()
      await until(`restart ${i}: feed disconnected`, () => !state.feedIsConnected)
      late.cut()
      // Stored while Redis was down: only the control plane's snapshot has it (Redis comes back empty).
      const whileDown = await revoke(null)
      await redis.start()
      await until(`restart ${i}: ${subscriberFirst ? 'subscriber' : 'command connection'} ready`, () => first.status === 'ready')
      await pause(200)
      late.heal()
      await until(`restart ${i}: ${subscriberFirst ? 'command connection' : 'subscriber'} ready`, () => second.status === 'ready')
      await until(`restart ${i}: feed connected on the complete list`, () => state.feedIsConnected && holds(deny, whileDown))
      for (let s = 1; s <= seq; s++) assert.ok(holds(deny, held[s - 1]!), `restart ${i}: revocation ${s} held`)
      const after = await revoke(publisher)
      await until(`restart ${i}: a revocation published after the restart is applied`, () => holds(deny, after))
    }
  })

  test('the command connection dropping alone never leaves the feed waiting: a subscriber flap afterwards still resyncs', async () => {
    const subPath = await TcpRelay.start(redis.port)
    const cmdPath = await TcpRelay.start(redis.port)
    cleanups.push(
      () => subPath.close(),
      () => cmdPath.close(),
    )
    const { feed, state, deny, sub, cmd, publisher } = await follow(subPath.url, cmdPath.url, 'cmd-alone:')
    feed.start()
    await feed.ready
    await until('feed connected', () => state.feedIsConnected)
    // The command connection is cut and the subscriber flaps meanwhile: its resync fails on the missing command connection.
    cmdPath.cut()
    await until('command connection down', () => cmd.status !== 'ready')
    subPath.cut()
    await until('feed disconnected', () => !state.feedIsConnected)
    const whileDown = await revoke(null)
    subPath.heal()
    await until('subscriber back', () => sub.status === 'ready')
    await pause(300)
    cmdPath.heal()
    await until('feed connected on the complete list', () => state.feedIsConnected && holds(deny, whileDown))
    const after = await revoke(publisher)
    await until('new revocations applied', () => holds(deny, after))
  })

  test(
    'a silent network cut (connections open, nothing through): the feed notices, follows the control plane meanwhile, and resyncs once the path ' + 'is back',
    async () => {
      const subPath = await TcpRelay.start(redis.port)
      const cmdPath = await TcpRelay.start(redis.port)
      cleanups.push(
        () => subPath.close(),
        () => cmdPath.close(),
      )
      const { feed, state, deny, publisher } = await follow(subPath.url, cmdPath.url, 'silent:')
      feed.start()
      await feed.ready
      await until('feed connected', () => state.feedIsConnected)
      subPath.stall()
      cmdPath.stall()
      // Published on Redis (the control plane's own path is fine) and stored: this gateway's subscriber never hears it.
      const during = await revoke(publisher)
      await until('the revocation is enforced while the path is cut', () => holds(deny, during))
      assert.equal(state.feedIsConnected, false, 'the silent subscriber connection was noticed')
      subPath.resume()
      cmdPath.resume()
      await until('feed connected again', () => state.feedIsConnected)
      const after = await revoke(publisher)
      await until('a revocation published after the cut is applied', () => holds(deny, after))
    },
  )
})
