/**
 * What the `aegis` command prints where: a command that prints a result
 * (`token mint`) writes only that result on standard output, its log lines on
 * standard error, so `TOKEN=$(aegis token mint …)` captures the token alone;
 * `aegis help COMMAND` prints that command's usage; the top-level usage and
 * the command agree on `--ttl`; log lines are JSON with one `msg` each.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { Writable } from 'node:stream'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify, { type FastifyBaseLogger } from 'fastify'
import { createLogger } from '../../../src/observability/logger.js'
import { installErrorHandler } from '../../../src/http/error-handler.js'
import { InvalidRequest } from '../../../src/errors.js'
import { seedAgent, startControlPlane } from '../control-plane/harness.js'

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..')

function aegis(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/aegis-cli.ts', ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString('utf8')
    })
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString('utf8')
    })
    child.once('close', (code) => done({ code, out, err }))
  })
}

test("aegis help COMMAND prints that command's usage; help and token mint agree on --ttl", async () => {
  const general = await aegis(['help'])
  assert.equal(general.code, 0)
  const mintLine = general.out.split('\n').find((l) => l.includes('aegis token mint'))
  assert.ok(mintLine?.includes('--ttl'), general.out)
  const token = await aegis(['help', 'token'])
  assert.equal(token.code, 0, token.err)
  assert.match(token.out, /^aegis token mint --tenant T --agent A/)
  assert.match(token.out, /--ttl SECONDS/)
  assert.ok(!token.out.includes('Usage:'), 'not the general usage')
  for (const cmd of ['dev', 'serve', 'keys', 'audit', 'policy']) {
    const r = await aegis(['help', cmd])
    assert.equal(r.code, 0, `${cmd}: ${r.err}`)
    assert.match(r.out, new RegExp(`aegis ${cmd}`), cmd)
    assert.ok(!r.out.includes('Usage:\n  aegis dev '), `${cmd} prints its own usage`)
  }
  const unknown = await aegis(['help', 'nope'])
  assert.equal(unknown.code, 2)
  assert.match(unknown.err, /unknown command "nope"/)
})

test('TOKEN=$(aegis token mint …) captures the token alone; --ttl is honoured and bounded', async () => {
  const h = await startControlPlane()
  try {
    const s = await seedAgent(h, { agentBody: { max_ttl_seconds: 900 } })
    const env = {
      AEGIS_DATA_DIR: h.config.dataDir,
      AEGIS_KEK: h.config.kek!,
      AEGIS_ISSUER: h.config.issuer,
      AEGIS_LOG_LEVEL: 'info',
      AEGIS_INSTANCE_ID: 'cli-output-test',
    }
    const minted = await aegis(['token', 'mint', '--tenant', s.tenant, '--agent', s.agentId, '--ttl', '120'], env)
    assert.equal(minted.code, 0, minted.err)
    assert.match(minted.out, /^eyJ[\w-]+\.[\w-]+\.[\w-]+\n$/, 'standard output is the JWT and a newline, nothing else')
    // The log lines went to standard error, as JSON.
    const logLines = minted.err.split('\n').filter((l) => l.startsWith('{'))
    assert.ok(logLines.length > 0, `log lines on stderr: ${minted.err}`)
    for (const l of logLines) JSON.parse(l)
    const claims = JSON.parse(Buffer.from(minted.out.trim().split('.')[1]!, 'base64url').toString('utf8')) as { exp: number; iat: number }
    assert.equal(claims.exp - claims.iat, 120)

    const tooLong = await aegis(['token', 'mint', '--tenant', s.tenant, '--agent', s.agentId, '--ttl', '7200'], env)
    assert.equal(tooLong.code, 2)
    assert.equal(tooLong.out, '')
    assert.match(tooLong.err, /--ttl must be a whole number of seconds from 1 to 3600/)
    const aboveAgent = await aegis(['token', 'mint', '--tenant', s.tenant, '--agent', s.agentId, '--ttl', '1000'], env)
    assert.equal(aboveAgent.code, 1)
    assert.match(aboveAgent.err, /above the agent's max_ttl_seconds \(900\)/)
  } finally {
    await h.close()
  }
})

test('a "request refused" log line has one msg and keeps the reason', async () => {
  const lines: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
      cb()
    },
  })
  const app = Fastify({ loggerInstance: createLogger('info', 'aegis-test', sink) as FastifyBaseLogger })
  installErrorHandler(app)
  app.get('/x', async () => {
    throw new InvalidRequest('amount must be a number')
  })
  try {
    const res = await app.inject({ method: 'GET', url: '/x' })
    assert.equal(res.statusCode, 400)
    const refused = lines.find((l) => l.includes('request refused'))
    assert.ok(refused, lines.join('\n'))
    assert.equal(refused.match(/"msg":/g)?.length, 1, refused)
    const parsed = JSON.parse(refused) as Record<string, unknown>
    assert.equal(parsed.msg, 'request refused')
    assert.equal(parsed.reason, 'amount must be a number')
    assert.equal(parsed.code, 'invalid_request')
    // Any other call that passes an object with its own msg keeps both texts, under distinct keys.
    const logger = createLogger('info', 'aegis-test', sink)
    logger.info({ msg: 'inner' }, 'outer')
    const last = lines.at(-1)!
    assert.equal(last.match(/"msg":/g)?.length, 1, last)
    assert.deepEqual([(JSON.parse(last) as { msg: string }).msg, (JSON.parse(last) as { detail: string }).detail], ['outer', 'inner'])
  } finally {
    await app.close()
  }
})

test('AEGIS_TOKENS_MAX_TTL_SECONDS=60 aegis dev starts, prints an admin token and a demo agent whose tokens live 60 s', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const { freePort } = await import('../sdk/helpers/roles.js')
  const dir = mkdtempSync(join(tmpdir(), 'aegis-dev-ttl-'))
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/aegis-cli.ts', 'dev'], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      TEST_EXIT_WITH_PARENT: '1',
      AEGIS_DATA_DIR: dir,
      AEGIS_CONTROL_PORT: String(port),
      AEGIS_GATEWAY_PORT: '0',
      AEGIS_ISSUER: `http://127.0.0.1:${port}`,
      AEGIS_LOG_LEVEL: 'warn',
      AEGIS_TOKENS_MAX_TTL_SECONDS: '60',
    },
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (b: Buffer) => {
    out += b.toString('utf8')
  })
  child.stderr.on('data', (b: Buffer) => {
    err += b.toString('utf8')
  })
  const exited = new Promise((r) => child.once('exit', r))
  try {
    for (let i = 0; !out.includes('Ctrl-C stops it cleanly'); i++) {
      assert.equal(child.exitCode, null, `aegis dev exited: ${out}\n${err}`)
      assert.ok(i < 1200, `no banner: ${out}\n${err}`)
      await new Promise((r) => setTimeout(r, 50))
    }
    assert.doesNotMatch(out + err, /failed/)
    assert.match(out, /admin token\s+aegis_admin_\S+/)
    const id = /client_id\s+(\S+)/.exec(out)![1]!
    const secret = /client_secret\s+(\S+)/.exec(out)![1]!
    const res = await fetch(`http://127.0.0.1:${port}/oauth2/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
    })
    assert.equal(res.status, 200)
    assert.equal(((await res.json()) as { expires_in: number }).expires_in, 60)
  } finally {
    child.kill('SIGTERM')
    await exited
    rmSync(dir, { recursive: true, force: true })
  }
})
