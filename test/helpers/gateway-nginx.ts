/**
 * A real nginx (Debian package `nginx`) started by a test: generated config,
 * prefix, pid, logs and temp paths under a temp dir, `daemon off;`, as a
 * child process. Skips (or fails under AEGIS_REQUIRE_SERVICES=1) when the
 * binary is missing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const CANDIDATES = ['/usr/sbin/nginx', 'nginx']

/** The nginx binary, or null. */
export function nginxBinary(): string | null {
  for (const bin of CANDIDATES) {
    const r = spawnSync(bin, ['-v'], { stdio: 'ignore' })
    if (r.status === 0) return bin
  }
  return null
}

/** Skip reason when nginx is not installed (and not required). */
export function skipWithoutNginx(): string | false {
  if (nginxBinary()) return false
  const msg = 'nginx not installed: apt-get install -y nginx'
  if (process.env.AEGIS_REQUIRE_SERVICES === '1') throw new Error(`AEGIS_REQUIRE_SERVICES=1 and ${msg}`)
  return msg
}

export interface Nginx {
  url: string
  stop(): Promise<void>
}

async function waitForPort(port: number, child: ChildProcess, dir: string): Promise<void> {
  const deadline = Date.now() + 10_000
  for (;;) {
    if (child.exitCode !== null) {
      let log = ''
      try {
        log = readFileSync(join(dir, 'error.log'), 'utf8')
      } catch {
        /* none */
      }
      throw new Error(`nginx exited with ${child.exitCode}: ${log}`)
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1')
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error('nginx did not start listening in 10 s')
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Starts nginx on `port` with the `server { ... }` body given. */
export async function startNginx(port: number, serverBody: string): Promise<Nginx> {
  const bin = nginxBinary()
  if (!bin) throw new Error('nginx not installed')
  const dir = mkdtempSync(join(tmpdir(), 'aegis-nginx-'))
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, d))
  const conf = `
${process.getuid?.() === 0 ? 'user root root;' : ''}
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
${serverBody}
  }
}
`
  writeFileSync(join(dir, 'nginx.conf'), conf)
  const child = spawn(bin, ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString()
  })
  try {
    await waitForPort(port, child, dir)
  } catch (err) {
    child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`${(err as Error).message}\n${stderr}`)
  }
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r))
        child.kill('SIGQUIT')
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))])
        if (child.exitCode === null) child.kill('SIGKILL')
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
