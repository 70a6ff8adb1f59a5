/**
 * A private `redis-server` on its own loopback port, for tests that stop and
 * restart Redis (never the shared one on 6379). Runs as a child process
 * without persistence; `stop()` kills it by pid, `start()` starts it again on
 * the same port with an empty dataset, as a restarted cache-only Redis comes
 * back.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { connect } from 'node:net'
import { freePort } from './ports.js'

/** Skip reason when no `redis-server` binary is on the PATH (a failure under AEGIS_REQUIRE_SERVICES=1). */
export function skipWithoutRedisServer(): string | false {
  const r = spawnSync('redis-server', ['--version'], { stdio: 'ignore' })
  if (r.status === 0) return false
  const msg = 'redis-server not found on the PATH: install Redis (apt-get install redis-server) to run the Redis restart tests'
  if (process.env.AEGIS_REQUIRE_SERVICES === '1') throw new Error(`AEGIS_REQUIRE_SERVICES=1 and ${msg}`)
  return msg
}

/** True when something on 127.0.0.1:`port` answers `PING` with `+PONG` within `timeoutMs`. */
export function pingRedis(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' })
    let buf = ''
    const done = (ok: boolean): void => {
      clearTimeout(t)
      s.destroy()
      resolve(ok)
    }
    const t = setTimeout(() => done(false), timeoutMs)
    s.on('connect', () => s.write('PING\r\n'))
    s.on('data', (c: Buffer) => {
      buf += c.toString()
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'))
    })
    s.on('error', () => done(false))
  })
}

export class PrivateRedis {
  private child: ChildProcess | null = null
  private stderr = ''

  private constructor(readonly port: number) {}

  /** `redis://127.0.0.1:<port>`. */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  /** Whether the server process is running. */
  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null
  }

  /**
   * Starts a server on `port` (default: a free port) and waits until it
   * answers PING. A test that restarts it under reconnecting clients should
   * pass freeRestartablePort() (ports.ts says why).
   */
  static async start(port?: number): Promise<PrivateRedis> {
    const r = new PrivateRedis(port ?? (await freePort()))
    await r.start()
    return r
  }

  /** (Re)starts the server on its port; resolves once it answers PING (within 10 s). */
  async start(): Promise<void> {
    if (this.running) return
    this.stderr = ''
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    child.stderr?.on('data', (c: Buffer) => {
      this.stderr += c.toString()
    })
    this.child = child
    const deadline = Date.now() + 10_000
    for (;;) {
      if (await pingRedis(this.port, 200)) return
      if (!this.running) throw new Error(`redis-server on port ${this.port} exited: ${this.stderr}`)
      if (Date.now() > deadline) throw new Error(`redis-server on port ${this.port} did not answer PING within 10 s: ${this.stderr}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  /** Kills the server by pid (SIGKILL by default: a crash, connections cut at once) and waits for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child
    if (!child || !this.running) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill(signal)
    await exited
    this.child = null
  }

  /** Stops the server for good. */
  async close(): Promise<void> {
    await this.stop('SIGKILL')
  }
}
