/** Starts gateways as child processes (test/helpers/gateway-child.ts). */
import { spawn, type ChildProcess } from 'node:child_process'
import type { GatewayTuning } from '../../src/gateway/index.js'

export interface GatewayProcess {
  url: string
  gatewayId: string
  child: ChildProcess
  stop(): Promise<void>
}

export async function startGatewayProcess(config: Record<string, unknown>, tuning: Partial<GatewayTuning> = {}): Promise<GatewayProcess> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('AEGIS_')) env[k] = v
  env.GATEWAY_CHILD = JSON.stringify({ config, tuning })
  // GATEWAY_CHILD_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the gateway under a benchmark.
  const nodeArgs = (process.env.GATEWAY_CHILD_NODE_ARGS ?? '').split(' ').filter((a) => a.length > 0)
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', 'test/helpers/gateway-child.ts'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString()
  })
  const line = await new Promise<string>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`gateway process did not get ready in 30 s: ${stderr}`))
    }, 30_000)
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString()
      const m = /READY (\S+) (\S+)/.exec(out)
      if (m) {
        clearTimeout(timer)
        resolve(m[0])
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`gateway process exited with ${code}: ${stderr}`))
    })
  })
  const [, url, gatewayId] = line.split(' ') as [string, string, string]
  return {
    url,
    gatewayId,
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
