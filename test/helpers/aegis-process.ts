/**
 * Real `aegis` processes for multi-process tests: `aegis serve --role …`
 * started from source (test/helpers/aegis-cli.ts) with only the AEGIS_*
 * variables a test gives, killed or stopped by pid, restarted with the same
 * configuration; and one-shot commands such as `aegis audit verify`.
 */
import { type ProcessResult, runProcess } from './run-process.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { appendFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')
const CLI = 'test/helpers/aegis-cli.ts'
/** Output kept per process for a failing test's message (the newest part). */
const LOG_LIMIT = 64 * 1024

/** The parent's environment without any AEGIS_* variable, plus `env`. */
function childEnv(env: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('AEGIS_')) out[k] = v
  return { ...out, ...env }
}

/** Runs `aegis <args>` to completion; resolves with its exit code and output. */
export function runAegis(args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<ProcessResult> {
  return runProcess(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, env: childEnv(env), timeoutMs })
}

/**
 * One `aegis serve --role <role>` process. `start()` resolves once it printed
 * the address it listens on; `kill()` sends a signal by pid (SIGKILL: a crash)
 * and waits for the exit; `start()` again runs a new process with the same
 * configuration. With `supervise`, an exit the test did not cause is recorded
 * in `crashes` and the process is started again at once, as systemd's
 * `Restart=always` or a Kubernetes pod would be.
 */
export class AegisProcess {
  private child: ChildProcess | null = null
  private output = ''
  /** Exits the test did not ask for, each with the output that preceded it. */
  readonly crashes: string[] = []
  /** Set while the test itself kills or stops the process. */
  private ending = false
  /** Restart after an exit the test did not ask for. */
  supervise = false
  /** The URL the process printed (`aegis: control plane on …` / `aegis: gateway on …`). */
  url = ''

  constructor(
    /** A name for messages (`cp-1`). */
    readonly name: string,
    readonly role: 'control-plane' | 'gateway',
    private readonly env: Record<string, string>,
    /** Output lines not kept in memory (e.g. one warning per refused request under load). */
    private readonly omit?: RegExp,
    /** A file that receives all the output, omitted lines included. */
    private readonly logFile?: string,
  ) {}

  /** Whether the process is running. */
  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null
  }

  get pid(): number | undefined {
    return this.child?.pid
  }

  /** The newest output of this process and the ones before it (stdout and stderr). */
  log(): string {
    return this.output
  }

  private record(chunk: string): void {
    if (this.logFile) appendFileSync(this.logFile, chunk)
    if (this.omit)
      chunk = chunk
        .split('\n')
        .filter((l) => !this.omit!.test(l))
        .join('\n')
    this.output += chunk
    if (this.output.length > LOG_LIMIT) this.output = this.output.slice(-LOG_LIMIT)
  }

  /** Starts the process; resolves once it listens (within `timeoutMs`), rejects if it exits first. */
  async start(timeoutMs = 60_000): Promise<void> {
    if (this.running) return
    // stdin is a pipe only the test holds: when the test process is gone, the server goes too (aegis-cli.ts).
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'serve', '--role', this.role], {
      cwd: ROOT,
      // One gateway process unless the test asks for workers: the default (one per core with Redis) would double every gateway here.
      env: { ...(this.role === 'gateway' ? { AEGIS_GATEWAY_WORKERS: '1' } : {}), ...childEnv(this.env), TEST_EXIT_WITH_PARENT: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    this.child = child
    this.record(`--- ${this.name} started (pid ${child.pid})\n`)
    child.once('exit', (code, signal) => {
      this.record(`--- ${this.name} (pid ${child.pid}) exited: ${code ?? signal}\n`)
      if (this.ending || this.child !== child || !this.url) return
      this.crashes.push(`${this.name} (pid ${child.pid}) exited by itself (${code ?? signal}):\n${this.output.slice(-3_000)}`)
      // A process that keeps dying is left dead after a few tries: the test reports every crash anyway.
      if (this.supervise && this.crashes.length <= 5)
        this.start().catch((err: unknown) => this.crashes.push(`${this.name} could not be restarted: ${String(err)}`))
    })
    const what = this.role === 'control-plane' ? 'control plane' : 'gateway'
    const listening = new RegExp(`aegis: ${what} on (http://\\S+)`)
    await new Promise<void>((resolvePromise, reject) => {
      let seen = ''
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new Error(`${this.name} did not listen within ${timeoutMs} ms:\n${this.output}`))
      }, timeoutMs)
      const onOut = (c: Buffer): void => {
        const s = c.toString()
        this.record(s)
        seen += s
        const m = listening.exec(seen)
        if (m) {
          clearTimeout(timer)
          this.url = m[1]!
          resolvePromise()
        }
      }
      child.stdout!.on('data', onOut)
      child.stderr!.on('data', (c: Buffer) => this.record(c.toString()))
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`${this.name} exited (${code ?? signal}) before listening:\n${this.output}`))
      })
    })
  }

  /** Sends `signal` to the process by pid and waits for it to exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child
    if (!child || !this.running) return
    const exited = new Promise<void>((r) => child.once('exit', () => r()))
    this.ending = true
    child.kill(signal)
    await exited
    this.ending = false
  }

  /** SIGTERM (clean shutdown: drains, flushes the audit log), SIGKILL after `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    const child = this.child
    if (!child || !this.running) return
    const exited = new Promise<void>((r) => child.once('exit', () => r()))
    this.ending = true
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    await exited
    clearTimeout(timer)
    this.ending = false
  }
}
