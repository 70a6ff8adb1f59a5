/**
 * `aegis serve --role gateway --workers N`: one gateway on every core.
 *
 * node:cluster rather than SO_REUSEPORT listeners: Node 20 cannot set
 * SO_REUSEPORT, and the primary handing each new connection to a worker
 * costs nothing per request on keep-alive connections. Each worker is a
 * whole gateway (its own verified-token and decision caches, feed
 * subscription and deny list) reporting as `<gateway id>-w<index>`, so the
 * control plane's acknowledgements show every worker's lag. The replay
 * cache must be one for all of them (Redis): an in-process cache per worker
 * would let a single-use jti through once per worker. `GET /metrics`, on any
 * worker, answers the sum over all workers (prom-client's
 * AggregatorRegistry, asked through the primary).
 */
import cluster, { type Worker } from 'node:cluster'
import { availableParallelism } from 'node:os'
import { AggregatorRegistry } from 'prom-client'
import { type AegisConfig, CONFIG_KEYS, envName } from '../config/schema.js'
import { Metrics } from '../observability/metrics.js'
import { closeOnSignal, startRoles } from './run-roles.js'

/** Set in a worker's environment by the primary: the worker's index (not AEGIS_*: those are settings, and unknown ones are refused). */
const WORKER_ENV = 'NODE_CLUSTER_AEGIS_GATEWAY_WORKER'
const MSG_LISTENING = 'aegis:gateway-listening'
const MSG_METRICS_REQ = 'aegis:metrics-request'
const MSG_METRICS_RES = 'aegis:metrics-response'
/** A worker that dies is replaced after this pause; this many deaths within a minute stop the gateway instead. */
const RESPAWN_DELAY_MS = 1_000
const MAX_DEATHS_PER_MINUTE = 5
const STOP_GRACE_MS = 30_000

type Message =
  | { type: typeof MSG_LISTENING; url: string; tlsUrl?: string }
  | { type: typeof MSG_METRICS_REQ; id: number }
  | { type: typeof MSG_METRICS_RES; id: number; text?: string; error?: string }

const workersKey = CONFIG_KEYS.find((k) => k.path === 'gateway.workers')!

/**
 * How many gateway processes to run: `--workers`, else gateway.workers, else
 * every core when Redis is configured and one otherwise. Throws when more
 * than one is asked for without Redis.
 */
export function gatewayWorkerCount(config: AegisConfig, flag: string | undefined): number {
  let n: number | undefined = config.gateway.workers
  if (flag !== undefined) {
    if (!/^\d{1,3}$/.test(flag) || Number(flag) < 1 || Number(flag) > 256) throw new Error('--workers must be an integer from 1 to 256')
    n = Number(flag)
  }
  if (n === undefined) return config.redisUrl ? availableParallelism() : 1
  if (n > 1 && !config.redisUrl) {
    throw new Error(
      `${n} gateway workers need AEGIS_REDIS_URL (redisUrl): the replay cache must be shared, or a single-use token would pass once per worker ` +
        `(set ${envName(workersKey)} or --workers to 1, or configure Redis)`,
    )
  }
  return n
}

/** True in a process the gateway primary started as one of its workers. */
export function isGatewayWorker(): boolean {
  return cluster.isWorker && process.env[WORKER_ENV] !== undefined
}

/** A worker: runs one gateway on the shared ports, tells the primary where, serves aggregated metrics, drains on SIGTERM. */
export async function runGatewayWorker(config: AegisConfig): Promise<number> {
  const index = process.env[WORKER_ENV]!
  const id = `${config.gateway.id ?? config.instanceId}-w${index}`
  const metrics = new Metrics()
  // Constructing it installs the worker's answer to the primary's metrics requests; setRegistries names what it answers with.
  new AggregatorRegistry()
  AggregatorRegistry.setRegistries([metrics.registry])
  metrics.setExposition(askPrimaryForMetrics)
  const running = await startRoles(Object.freeze({ ...config, gateway: Object.freeze({ ...config.gateway, id }) }), 'gateway', { gateway: { metrics } })
  const gw = running.gateway!
  process.send?.({ type: MSG_LISTENING, url: gw.url, ...(gw.tlsUrl ? { tlsUrl: gw.tlsUrl } : {}) } satisfies Message)
  await closeOnSignal(running, () => {})
  return 0
}

let metricsRequests = 0
const pendingMetrics = new Map<number, { resolve(text: string): void; reject(err: Error): void }>()

function askPrimaryForMetrics(): Promise<string> {
  const id = ++metricsRequests
  if (pendingMetrics.size === 0) process.on('message', onMetricsResponse)
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => settle(id, undefined, 'the gateway primary did not answer within 5 s'), 5_000)
    pendingMetrics.set(id, {
      resolve: (t) => {
        clearTimeout(timer)
        resolve(t)
      },
      reject: (e) => {
        clearTimeout(timer)
        reject(e)
      },
    })
    process.send?.({ type: MSG_METRICS_REQ, id } satisfies Message)
  })
}

function settle(id: number, text: string | undefined, error: string | undefined): void {
  const p = pendingMetrics.get(id)
  if (!p) return
  pendingMetrics.delete(id)
  if (pendingMetrics.size === 0) process.off('message', onMetricsResponse)
  if (text !== undefined) p.resolve(text)
  else p.reject(new Error(error ?? 'no metrics'))
}

function onMetricsResponse(m: unknown): void {
  const msg = m as Partial<Message> | null
  if (msg?.type === MSG_METRICS_RES && typeof msg.id === 'number') settle(msg.id, msg.text, msg.error)
}

/**
 * The primary: forks `n` workers, waits until every one listens, prints the
 * address once, replaces a worker that dies (stopping instead when they keep
 * dying), and on SIGINT/SIGTERM drains them all.
 */
export async function runGatewayPrimary(n: number, out: (line: string) => void, err: (line: string) => void): Promise<number> {
  const aggregator = new AggregatorRegistry()
  const byIndex = new Map<number, Worker>()
  const deaths: number[] = []
  let stopping = false
  let listening = 0
  let address = ''

  cluster.on('message', (worker, m: unknown) => {
    const msg = m as Partial<Message> | null
    if (msg?.type !== MSG_METRICS_REQ || typeof msg.id !== 'number') return
    const id = msg.id
    aggregator.clusterMetrics().then(
      (text) => worker.isConnected() && worker.send({ type: MSG_METRICS_RES, id, text } satisfies Message),
      (e: unknown) => worker.isConnected() && worker.send({ type: MSG_METRICS_RES, id, error: e instanceof Error ? e.message : String(e) } satisfies Message),
    )
  })

  const stopAll = async (): Promise<void> => {
    stopping = true
    const exits = [...byIndex.values()].map(
      (w) =>
        new Promise<void>((resolve) => {
          if (w.isDead()) return resolve()
          const kill = setTimeout(() => w.process.kill('SIGKILL'), STOP_GRACE_MS)
          w.once('exit', () => {
            clearTimeout(kill)
            resolve()
          })
          w.process.kill('SIGTERM')
        }),
    )
    await Promise.all(exits)
  }

  return new Promise<number>((resolve) => {
    let started = false
    const fork = (index: number): void => {
      const w = cluster.fork({ [WORKER_ENV]: String(index) })
      byIndex.set(index, w)
      w.on('message', (m: unknown) => {
        const msg = m as Partial<Message> | null
        if (msg?.type !== MSG_LISTENING || started) return
        address = `${msg.url}${msg.tlsUrl ? ` and ${msg.tlsUrl} (mTLS)` : ''}`
        if (++listening === n) {
          started = true
          out(`aegis: gateway on ${address} (${n} workers)`)
        }
      })
      w.on('exit', (code, signal) => {
        if (stopping) return
        const why = signal ? `signal ${signal}` : `code ${code}`
        if (!started) {
          err(`aegis: gateway worker ${index} exited (${why}) before listening; stopping`)
          void stopAll().then(() => resolve(1))
          return
        }
        const now = Date.now()
        deaths.push(now)
        while (deaths.length > 0 && deaths[0]! < now - 60_000) deaths.shift()
        if (deaths.length >= MAX_DEATHS_PER_MINUTE) {
          err(`aegis: gateway worker ${index} exited (${why}); ${deaths.length} workers died within a minute, stopping`)
          void stopAll().then(() => resolve(1))
          return
        }
        err(`aegis: gateway worker ${index} exited (${why}); starting another in ${RESPAWN_DELAY_MS} ms`)
        setTimeout(() => !stopping && fork(index), RESPAWN_DELAY_MS)
      })
    }
    for (let i = 1; i <= n; i++) fork(i)
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) return
      err(`aegis: ${signal} received, draining ${byIndex.size} gateway workers…`)
      void stopAll().then(() => {
        err('aegis: stopped cleanly')
        resolve(0)
      })
    }
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
  })
}
