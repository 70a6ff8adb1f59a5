/**
 * A private PostgreSQL cluster (initdb + pg_ctl) on its own loopback port and
 * socket directory, for tests that stop and start the database (never the
 * shared server on 5432). Trust authentication on 127.0.0.1 only; the data
 * directory lives under the OS temp dir and is removed by `close()`.
 *
 * initdb refuses to run as root: as root, every command runs as the
 * `postgres` user (runuser), which then owns the data directory.
 */
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './ports.js'

function which(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0
}

const asRoot = typeof process.getuid === 'function' && process.getuid() === 0

/** Skip reason when initdb / pg_ctl are not on the PATH (a failure under AEGIS_REQUIRE_SERVICES=1). */
export function skipWithoutPostgresBinaries(): string | false {
  if (which('initdb') && which('pg_ctl') && (!asRoot || (which('runuser') && spawnSync('id', ['postgres'], { stdio: 'ignore' }).status === 0))) return false
  const msg = 'initdb / pg_ctl not found on the PATH (or running as root without a postgres user): install PostgreSQL to run the database restart tests'
  if (process.env.AEGIS_REQUIRE_SERVICES === '1') throw new Error(`AEGIS_REQUIRE_SERVICES=1 and ${msg}`)
  return msg
}

function command(bin: string, args: string[]): [string, string[]] {
  return asRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args]
}

function run(bin: string, args: string[], timeoutMs = 60_000): SpawnSyncReturns<string> {
  const [cmd, argv] = command(bin, args)
  return spawnSync(cmd, argv, { encoding: 'utf8', timeout: timeoutMs })
}

/** Runs a command without blocking the event loop (servers in this process keep answering meanwhile). */
function runAsync(bin: string, args: string[]): Promise<{ status: number | null; output: string }> {
  const [cmd, argv] = command(bin, args)
  return new Promise((resolve) => {
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (c: Buffer) => { output += c.toString() })
    child.stderr.on('data', (c: Buffer) => { output += c.toString() })
    child.on('close', (status) => resolve({ status, output }))
  })
}

export class PrivatePostgres {
  private running = false

  private constructor(readonly port: number, private readonly dir: string) {}

  /** `postgres://postgres@127.0.0.1:<port>/postgres`. */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`
  }

  private get data(): string {
    return join(this.dir, 'data')
  }

  /** initdb into a fresh temp dir, then start on a free port; resolves once it accepts connections. */
  static async start(): Promise<PrivatePostgres> {
    const dir = mkdtempSync(join(tmpdir(), 'aegis-pg-'))
    if (asRoot) {
      const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' })
      const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' })
      chownSync(dir, Number(id.stdout.trim()), Number(gid.stdout.trim()))
    }
    chmodSync(dir, 0o700)
    const pg = new PrivatePostgres(await freePort(), dir)
    const init = run('initdb', ['-D', pg.data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale', 'C'])
    if (init.status !== 0) {
      rmSync(dir, { recursive: true, force: true })
      throw new Error(`initdb failed: ${init.stderr || init.stdout}`)
    }
    await pg.start()
    return pg
  }

  /** Starts the cluster (pg_ctl start -w). */
  async start(): Promise<void> {
    if (this.running) return
    const opts = `-p ${this.port} -c listen_addresses=127.0.0.1 -k ${this.dir} -c fsync=off -c max_connections=100`
    const r = await runAsync('pg_ctl', ['-D', this.data, '-o', opts, '-l', join(this.dir, 'log'), '-w', '-t', '60', 'start'])
    if (r.status !== 0) throw new Error(`pg_ctl start failed: ${r.output}`)
    this.running = true
  }

  /** Stops the cluster; `immediate` (default) is a crash: connections cut, no checkpoint. */
  async stop(mode: 'immediate' | 'fast' = 'immediate'): Promise<void> {
    if (!this.running) return
    const r = await runAsync('pg_ctl', ['-D', this.data, '-m', mode, '-w', '-t', '60', 'stop'])
    if (r.status !== 0) throw new Error(`pg_ctl stop failed: ${r.output}`)
    this.running = false
  }

  /** Stops the cluster for good and removes its files. */
  async close(): Promise<void> {
    await this.stop('immediate').catch(() => {})
    rmSync(this.dir, { recursive: true, force: true })
  }
}
