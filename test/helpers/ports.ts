import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'

/** A loopback port nothing listens on right now (for URLs that must be known before a server is built). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address()
      const port = typeof addr === 'object' && addr ? addr.port : 0
      s.close(() => resolve(port))
    })
  })
}

/**
 * Runs `start` (build a server whose config names its ports, then listen on
 * them; on failure it closes what it built) on `count` ports free a moment
 * before. Another test can take one in between: on EADDRINUSE it starts again
 * on new ports, up to five times. A server left built after a failed listen
 * kept its test file's process alive until the two-minute timeout (seen in CI).
 */
export async function onFreePorts<T>(count: number, start: (ports: number[]) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const ports: number[] = []
    for (let i = 0; i < count; i++) ports.push(await freePort())
    try {
      return await start(ports)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt === 5) throw err
    }
  }
}

/** The kernel's ephemeral (client) port range; Linux's default when unreadable. */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
    if (lo && hi) return [lo, hi]
  } catch {
    /* not Linux */
  }
  return [32768, 60999]
}

/**
 * A free loopback port OUTSIDE the ephemeral range, for a server a test stops
 * and starts again on the same port. While it is down, clients reconnecting
 * to 127.0.0.1:P are given local ports from the ephemeral range, and one may
 * get P itself and connect to itself (TCP simultaneous open), holding the
 * port so the restarted server cannot bind it; a port no client is ever
 * given cannot be taken that way.
 */
export async function freeRestartablePort(): Promise<number> {
  const [lo] = ephemeralRange()
  const min = 10_000
  const max = Math.max(min + 1_000, lo - 1)
  for (let i = 0; i < 50; i++) {
    const port = min + Math.floor(Math.random() * (max - min))
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer()
      s.once('error', () => resolve(false))
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
    })
    if (ok) return port
  }
  throw new Error(`no free port between ${min} and ${max}`)
}
