/** Starts control planes as child processes (test/helpers/control-plane-child.ts). */
import { spawn, type ChildProcess } from 'node:child_process'

export interface ControlPlaneProcess {
  url: string
  child: ChildProcess
  stop(): Promise<void>
}

export interface ControlPlaneProcessOptions {
  /** Port to listen on; default any free one. */
  port?: number
  /** Feed on Redis under this key prefix (config.redisUrl must be set). */
  redisPrefix?: string
}

/**
 * Spawns a control plane with `config` (overrides as loadConfig takes them)
 * and resolves once it listens. Its log lines are dropped unless
 * AEGIS_TEST_CHILD_LOGS=1, which copies them to this process's stderr.
 */
export async function startControlPlaneProcess(config: Record<string, unknown>, opts: ControlPlaneProcessOptions = {}): Promise<ControlPlaneProcess> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('AEGIS_')) env[k] = v
  env.CONTROL_PLANE_CHILD = JSON.stringify({ config, ...opts })
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/control-plane-child.ts'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  const copy = process.env.AEGIS_TEST_CHILD_LOGS === '1'
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-8192)
    if (copy) process.stderr.write(c)
  })
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    let done = false
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`control plane process did not start in 30 s: ${stderr}`))
    }, 30_000)
    const onData = (c: Buffer): void => {
      if (copy) process.stderr.write(c)
      if (done) return
      out += c.toString()
      const m = /READY (\S+)/.exec(out)
      if (m) {
        done = true
        clearTimeout(timer)
        out = ''
        resolve(m[1]!)
      }
    }
    // Kept attached for the child's life: an unread pipe would block its logging.
    child.stdout?.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`control plane process exited with ${code}: ${stderr}`))
    })
  })
  return {
    url,
    child,
    stop: async () => {
      if (child.exitCode !== null) return
      const exited = new Promise((r) => child.once('exit', r))
      child.kill('SIGTERM')
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))])
      if (child.exitCode === null) child.kill('SIGKILL')
    },
  }
}
