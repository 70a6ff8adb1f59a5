/**
 * An open-loop load generator: sends requests at a fixed rate, spread evenly
 * over time, across a pool of keep-alive connections, and measures each
 * latency from the moment the request was due (as wrk2 does), so a stall
 * anywhere (server, network, this process) counts against every request it
 * delayed. autocannon's rate mode is not usable for this: each connection
 * sends its per-second quota at full speed and then idles, and it corrects
 * coordinated omission with a 1 ms expected interval, which adds synthetic
 * samples to every response over 1 ms.
 */
import { Pool } from 'undici'
import { percentiles } from './util.js'

export interface PacedLoadOptions {
  url: string
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: string
  connections: number
  /** Requests per second offered. */
  rate: number
  seconds: number
  /** Paced sending before measuring, on the same connections (opened and warmed). Default 2. */
  warmupSeconds?: number
}

export interface PacedLoadResult {
  offered: number
  /** Answered per second (2xx or not). */
  perSec: number
  p50Ms: number
  p99Ms: number
  maxMs: number
  errors: number
  non2xx: number
}

export async function pacedLoad(o: PacedLoadOptions): Promise<PacedLoadResult> {
  const target = new URL(o.url)
  const pool = new Pool(target.origin, { connections: o.connections, pipelining: 1 })
  try {
    await run(pool, target, o, o.warmupSeconds ?? 2)
    return await run(pool, target, o, o.seconds)
  } finally {
    await pool.close()
  }
}

async function run(pool: Pool, target: URL, o: PacedLoadOptions, seconds: number): Promise<PacedLoadResult> {
  const latencies: number[] = []
  let errors = 0
  let non2xx = 0
  const inFlight = new Set<Promise<void>>()
  const send = (dueAt: number): void => {
    const p: Promise<void> = pool
      .request({ path: target.pathname + target.search, method: o.method, headers: o.headers, ...(o.body !== undefined ? { body: o.body } : {}) })
      .then(
        async (res) => {
          await res.body.dump()
          latencies.push(performance.now() - dueAt)
          if (res.statusCode < 200 || res.statusCode >= 300) non2xx++
        },
        () => {
          errors++
        },
      )
      .finally(() => {
        inFlight.delete(p)
      })
    inFlight.add(p)
  }
  const intervalMs = 1000 / o.rate
  const total = Math.round(o.rate * seconds)
  const start = performance.now()
  let sent = 0
  while (sent < total) {
    const now = performance.now()
    // Everything due by now goes out, each stamped with its own due time; a late tick counts against the latency.
    while (sent < total && start + sent * intervalMs <= now) {
      send(start + sent * intervalMs)
      sent++
    }
    // A 1 ms timer, not a busy loop: on a 2-core machine spinning here would take the CPU from the server.
    await new Promise<void>((resolve) => setTimeout(resolve, 1))
  }
  await Promise.all(inFlight)
  const elapsedSec = (performance.now() - start) / 1000
  const p = percentiles(latencies)
  return { offered: o.rate, perSec: latencies.length / elapsedSec, p50Ms: p.p50, p99Ms: p.p99, maxMs: p.max, errors, non2xx }
}
