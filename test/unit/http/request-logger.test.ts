import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { createServer } from '../../../src/http/server.js'

function capture(): { logger: Logger; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'))
      cb()
    },
  })
  // The process logger's redaction (observability/logger.ts), writing to memory.
  const logger: Logger = pino(
    { level: 'info', redact: { paths: ['*.client_secret', 'req.headers.authorization'], censor: '[redacted]' } },
    stream,
  ) as unknown as Logger
  return {
    logger,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  }
}

test('request loggers log with the request id and redaction; requests that log nothing still work', async (t) => {
  const { logger, lines } = capture()
  const app = await createServer({ logger, bodyLimit: 4096, jsonDepth: 8 })
  t.after(() => app.close())
  app.get('/quiet', async () => ({ ok: true }))
  app.get('/loud', async (request) => {
    request.log.info({ body: { client_secret: 'hunter2', note: 'n' } }, 'handled')
    assert.equal(request.log.level, 'info')
    request.log.child({ step: 'inner' }).warn('from a child')
    return { ok: true }
  })
  app.get('/fail', async () => {
    throw new Error('boom')
  })

  assert.equal((await app.inject({ url: '/quiet' })).statusCode, 200)
  assert.equal(lines().length, 0)

  const loud = await app.inject({ url: '/loud' })
  assert.equal(loud.statusCode, 200)
  const [handled, inner] = lines()
  assert.equal(handled?.msg, 'handled')
  assert.equal(typeof handled?.reqId, 'string')
  assert.deepEqual(handled?.body, { client_secret: '[redacted]', note: 'n' })
  assert.equal(inner?.msg, 'from a child')
  assert.equal(inner?.step, 'inner')
  assert.equal(inner?.reqId, handled?.reqId)

  const fail = await app.inject({ url: '/fail' })
  assert.equal(fail.statusCode, 500)
  const failed = lines()
    .slice(2)
    .find((l) => l.level === 50)
  assert.ok(failed, 'a 500 is logged at error level')
  assert.equal(typeof failed.reqId, 'string')
  assert.notEqual(failed.reqId, handled?.reqId)
})
