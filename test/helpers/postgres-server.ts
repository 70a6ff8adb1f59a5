/**
 * A private PostgreSQL cluster for tests that stop and restart the database
 * (never the shared one on 5432): `initdb` into a temporary directory, its
 * own loopback port, its own socket directory, trust authentication, started
 * and stopped with `pg_ctl`. Run as the `postgres` user when the test runs
 * as root (PostgreSQL refuses to run as root), else as the current user.
 */
import { runProcess } from './run-process.js'
import { spawnSync } from 'node:child_process'
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { freeRestartablePort } from './ports.js'

const PG_ROOT = '/usr/lib/postgresql'

/** The newest `/usr/lib/postgresql/<major>/bin` holding initdb and pg_ctl, or the directory of an `initdb` on the PATH; null when neither exists. */
export function postgresBinDir(): string | null {
  if (existsSync(PG_ROOT)) {
    const majors = readdirSync(PG_ROOT)
      .filter((d) => /^\d+$/.test(d))
      .sort((a, b) => Number(b) - Number(a))
    for (const m of majors) {
      const bin = join(PG_ROOT, m, 'bin')
      if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'pg_ctl'))) return bin
    }
  }
  const which = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' })
  const path = which.status === 0 ? which.stdout.trim() : ''
  return path ? path.slice(0, path.lastIndexOf('/')) : null
}

/** uid/gid of the `postgres` user, read from /etc/passwd; null when there is none. */
function postgresUser(): { uid: number; gid: number } | null {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':')
      if (f[0] === 'postgres') return { uid: Number(f[2]), gid: Number(f[3]) }
    }
  } catch {
    /* no passwd file */
  }
  return null
}

const asRoot = (): boolean => userInfo().uid === 0

/**
 * Skip reason when a private cluster cannot be made here (no initdb/pg_ctl, or
 * running as root without a `postgres` user); throws under
 * AEGIS_REQUIRE_SERVICES=1.
 */
export function skipWithoutInitdb(): string | false {
  let msg: string | null = null
  if (postgresBinDir() === null)
    msg =
      `initdb and pg_ctl not found (under ${PG_ROOT}/*/bin or on the PATH): install PostgreSQL (apt-get install postgresql) to run the ` +
      `PostgreSQL fault tests`
  else if (asRoot() && postgresUser() === null) msg = 'running as root and there is no postgres user to run a private PostgreSQL cluster as'
  if (msg === null) return false
  if (process.env.AEGIS_REQUIRE_SERVICES === '1') throw new Error(`AEGIS_REQUIRE_SERVICES=1 and ${msg}`)
  return msg
}

/** Runs a PostgreSQL program (as `postgres` when we are root); resolves with its exit code and output. */
async function pgRun(bin: string, args: string[], timeoutMs = 60_000): Promise<{ code: number | null; out: string }> {
  const [cmd, argv] = asRoot() ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args]
  const r = await runProcess(cmd, argv, { cwd: '/', timeoutMs })
  return { code: r.code, out: r.stdout + r.stderr }
}

export class PrivatePostgres {
  private up = false

  private constructor(
    private readonly bin: string,
    /** Temporary directory holding the data directory, the socket and the server log. */
    readonly dir: string,
    readonly port: number,
  ) {}

  /** The data directory (`initdb -D`). */
  get dataDir(): string {
    return join(this.dir, 'data')
  }

  /** `postgres://postgres@127.0.0.1:<port>/postgres` (trust authentication). */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`
  }

  /** Whether the server was started and not stopped since. */
  get running(): boolean {
    return this.up
  }

  /** The server log so far (for a failing test's message). */
  log(): string {
    try {
      return readFileSync(join(this.dir, 'server.log'), 'utf8')
    } catch {
      return ''
    }
  }

  /**
   * Creates a cluster in a new temporary directory (owned by `postgres` when
   * we are root) on a free loopback port, and starts it. Listens on
   * 127.0.0.1 only, its socket in its own directory, no TCP peer but this machine.
   */
  static async start(): Promise<PrivatePostgres> {
    const bin = postgresBinDir()
    if (bin === null) throw new Error('initdb not found')
    const dir = mkdtempSync(join(tmpdir(), 'aegis-pg-'))
    if (asRoot()) {
      const u = postgresUser()
      if (u === null) throw new Error('no postgres user')
      chownSync(dir, u.uid, u.gid)
    }
    const pg = new PrivatePostgres(bin, dir, await freeRestartablePort())
    const init = await pgRun(join(bin, 'initdb'), ['-D', pg.dataDir, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-locale', '--no-sync'])
    if (init.code !== 0) {
      rmSync(dir, { recursive: true, force: true })
      throw new Error(`initdb failed (${init.code}): ${init.out}`)
    }
    // Appended settings win over initdb's defaults. Small and quick: a test cluster, not a tuned one.
    appendFileSync(
      join(pg.dataDir, 'postgresql.conf'),
      [
        '',
        `port = ${pg.port}`,
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${dir}'`,
        'max_connections = 100',
        'shared_buffers = 32MB',
        'logging_collector = off',
        '',
      ].join('\n'),
    )
    await pg.start()
    return pg
  }

  /** Starts the server and waits until it accepts connections (`pg_ctl start -w`, 60 s at most). */
  async start(): Promise<void> {
    if (this.up) return
    const r = await pgRun(join(this.bin, 'pg_ctl'), ['start', '-w', '-t', '60', '-D', this.dataDir, '-l', join(this.dir, 'server.log')], 90_000)
    if (r.code !== 0) throw new Error(`pg_ctl start failed (${r.code}): ${r.out}\n${this.log()}`)
    this.up = true
  }

  /**
   * Stops the server with `pg_ctl stop -m <mode>`: `immediate` (the default)
   * ends every backend at once without a checkpoint, as a crash would; the
   * next start runs crash recovery.
   */
  async stop(mode: 'smart' | 'fast' | 'immediate' = 'immediate'): Promise<void> {
    if (!this.up) return
    const r = await pgRun(join(this.bin, 'pg_ctl'), ['stop', '-w', '-t', '60', '-m', mode, '-D', this.dataDir], 90_000)
    if (r.code !== 0 && !/PID file .* does not exist|Is server running\?/.test(r.out)) throw new Error(`pg_ctl stop failed (${r.code}): ${r.out}`)
    this.up = false
  }

  /**
   * Synchronous last resort for a process 'exit' handler (a test killed by
   * its timeout): `pg_ctl stop -m immediate`, directory removed.
   */
  stopNow(): void {
    const bin = join(this.bin, 'pg_ctl')
    const args = ['stop', '-m', 'immediate', '-D', this.dataDir]
    if (asRoot()) spawnSync('runuser', ['-u', 'postgres', '--', bin, ...args], { stdio: 'ignore', cwd: '/' })
    else spawnSync(bin, args, { stdio: 'ignore' })
    rmSync(this.dir, { recursive: true, force: true })
  }

  /** Stops the server (fast shutdown) and removes its directory. */
  async close(): Promise<void> {
    try {
      await this.stop('fast')
    } catch {
      // Last resort: the postmaster's pid is the first line of postmaster.pid.
      try {
        const pid = Number(readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
        if (pid > 0) process.kill(pid, 'SIGQUIT')
      } catch {
        /* already gone */
      }
    }
    rmSync(this.dir, { recursive: true, force: true })
  }
}
