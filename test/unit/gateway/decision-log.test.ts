/**
 * The decision-log uploader against a small real HTTP server standing in for
 * the control plane: what it sends (sanitized, bounded parameters; never a
 * token), that a retry sends the very same records, that Retry-After is
 * honoured, and how drops are counted.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { gunzipSync } from 'node:zlib'
import { Registry } from 'prom-client'
import { sanitizeSampleParams } from '../../../src/gateway/candidate-reporter.js'
import { DecisionLogUploader, type UploadTarget } from '../../../src/gateway/decision-log/uploader.js'
import type { GatewayAuditEvent } from '../../../src/gateway/deps.js'
import { silentLogger } from '../../../src/observability/logger.js'

interface Upload {
  headers: Record<string, string | string[] | undefined>
  body: { gateway_id: string; records: Array<Record<string, unknown>> }
}

function event(over: Partial<GatewayAuditEvent> = {}): GatewayAuditEvent {
  return {
    type: 'decision',
    ts: Date.now(),
    gateway_id: 'gw-t',
    mode: 'authorize',
    tenant: 'acme',
    agent_id: 'bot',
    client_id: 'cl_bot',
    jti: 'jti-1',
    tool: 'crm.read',
    resource: null,
    decision: 'allow',
    enforced: true,
    reasons: [],
    policy_version: 'v1',
    policy_ids: [],
    risk: 'normal',
    latency_ms: 0.1,
    ...over,
  }
}

async function until(fn: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const start = Date.now()
  while (!(await fn())) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met')
    await new Promise((r) => setTimeout(r, 10))
  }
}

async function counter(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get()
  return (m?.values ?? []).filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((a, v) => a + v.value, 0)
}

describe('DecisionLogUploader', () => {
  let server: Server
  let target: UploadTarget
  const uploads: Upload[] = []
  let answers: Array<{ status: number; headers?: Record<string, string> }> = []
  /** When set, every answer waits for it. */
  let gate: Promise<void> | null = null

  before(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', async () => {
        uploads.push({ headers: req.headers, body: JSON.parse(gunzipSync(Buffer.concat(chunks)).toString()) as Upload['body'] })
        await gate
        const a = answers.shift() ?? { status: 202 }
        res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers })
        res.end('{}')
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    target = { url: (p) => base + p, headers: (extra = {}) => ({ authorization: 'Bearer gw-secret-token', ...extra }) }
  })
  after(async () => {
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
  })

  test('uploads gzip batches with the sanitized, bounded parameters and no token', async () => {
    uploads.length = 0
    const registry = new Registry()
    const u = new DecisionLogUploader(target, 'gw-t', silentLogger(), registry, { bufferSize: 100, batchSize: 3, flushIntervalMs: 20 })
    // As the pipeline hands them over: beside the event, so sinks that write the event never carry them.
    u.record(event({ decision: 'sanitize' }), { card: '[REDACTED]', note: 'x'.repeat(500), nested: { ok: 1 } })
    u.record(event({ type: 'token.refused', decision: undefined, enforced: undefined, error: 'token expired', tenant: null, agent_id: null }))
    u.record(event({ enforced: false, decision: 'deny', resource: 'crm:contacts/é😀' }))
    await until(() => uploads.length === 1)
    const [up] = uploads
    assert.equal(up!.headers['content-encoding'], 'gzip')
    assert.equal(up!.headers.authorization, 'Bearer gw-secret-token')
    assert.equal(up!.body.gateway_id, 'gw-t')
    const [a, b, c] = up!.body.records
    assert.deepEqual(a!.params, { card: '[REDACTED]', note: `${'x'.repeat(32)}…(500 chars)`, nested: { ok: 1 } })
    assert.equal(a!.decision, 'sanitize')
    assert.equal(b!.decision, 'refused')
    // A field with no value is left out (the control plane stores null): no params, tenant or agent here.
    for (const absent of ['params', 'tenant', 'agent_id', 'enforced']) assert.ok(!(absent in b!), `${absent} left out`)
    assert.equal(b!.error, 'token expired')
    assert.equal(c!.enforced, false)
    // Written as UTF-8 byte by byte into the batch buffer: non-ASCII text arrives intact.
    assert.equal(c!.resource, 'crm:contacts/é😀')
    assert.ok(!JSON.stringify(up!.body).includes('gw-secret-token'))
    assert.equal(new Set(up!.body.records.map((r) => r.id)).size, 3)
    // A parameter named __proto__ travels as a plain key and sets no prototype.
    const polluting = sanitizeSampleParams(JSON.parse('{"__proto__": {"polluted": true}, "q": "x"}') as Record<string, unknown>, [])
    assert.equal(JSON.stringify(polluting), '{"__proto__":{"polluted":true},"q":"x"}')
    assert.equal((polluting as { polluted?: unknown }).polluted, undefined)
    assert.equal(({} as { polluted?: unknown }).polluted, undefined)
    for (const r of up!.body.records) assert.match(String(r.id), /^[0-9a-f]{32}$/)
    await until(async () => (await counter(registry, 'aegis_decision_log_uploaded_total')) === 3)
    await u.close()
  })

  test('a batch over 4 MiB of JSON is split: what fits goes now, the rest first in the next upload, every record once', async () => {
    uploads.length = 0
    const registry = new Registry()
    const u = new DecisionLogUploader(target, 'gw-t', silentLogger(), registry, { bufferSize: 1000, batchSize: 200, flushIntervalMs: 20 })
    // Each record near its own bounds: 32 reasons of 1 KiB and 64 policy ids of 256 characters, about 50 KB of JSON.
    const big = { reasons: Array.from({ length: 32 }, (_, i) => `${i}`.padEnd(1024, 'r')), policy_ids: Array.from({ length: 64 }, () => 'p'.repeat(256)) }
    for (let i = 0; i < 120; i++) u.record(event({ ...big, jti: `big-${i}` }))
    await until(async () => (await counter(registry, 'aegis_decision_log_uploaded_total')) === 120)
    assert.ok(uploads.length >= 2, `${uploads.length} uploads`)
    for (const up of uploads) assert.ok(JSON.stringify(up.body).length <= 4 * 1024 * 1024 + 64)
    assert.deepEqual(
      uploads.flatMap((up) => up.body.records.map((r) => r.jti)),
      Array.from({ length: 120 }, (_, i) => `big-${i}`),
    )
    await u.close()
  })

  test("a failed upload is retried with the same records, after the answer's Retry-After", async () => {
    uploads.length = 0
    answers = [{ status: 503, headers: { 'retry-after': '1' } }, { status: 429 }]
    const registry = new Registry()
    const u = new DecisionLogUploader(target, 'gw-t', silentLogger(), registry, { bufferSize: 100, batchSize: 2, flushIntervalMs: 20, backoffInitialMs: 10 })
    u.record(event())
    u.record(event())
    await until(() => uploads.length === 3)
    assert.deepEqual(uploads[1]!.body, uploads[0]!.body)
    assert.deepEqual(uploads[2]!.body, uploads[0]!.body)
    await until(async () => (await counter(registry, 'aegis_decision_log_uploaded_total')) === 2)
    assert.equal(await counter(registry, 'aegis_decision_log_dropped_total'), 0)
    await u.close()
  })

  test('a full buffer drops and counts; a refused upload drops and counts its events', async () => {
    uploads.length = 0
    answers = [{ status: 400 }]
    const registry = new Registry()
    const u = new DecisionLogUploader(target, 'gw-t', silentLogger(), registry, { bufferSize: 4, batchSize: 4, flushIntervalMs: 60_000 })
    for (let i = 0; i < 6; i++) u.record(event())
    assert.equal(await counter(registry, 'aegis_decision_log_dropped_total', { reason: 'buffer_full' }), 2)
    await until(async () => (await counter(registry, 'aegis_decision_log_dropped_total', { reason: 'rejected' })) === 4)
    assert.equal(u.held, 0)
    await u.close()
  })

  test('the next full batch is built while an upload is in flight and counts as held; a retry keeps its place: every record once, in order', async () => {
    uploads.length = 0
    answers = [{ status: 503, headers: { 'retry-after': '0' } }]
    let open!: () => void
    gate = new Promise<void>((r) => {
      open = r
    })
    const registry = new Registry()
    const u = new DecisionLogUploader(target, 'gw-t', silentLogger(), registry, { bufferSize: 6, batchSize: 2, flushIntervalMs: 60_000 })
    try {
      const record = (i: number) => u.record(event({ jti: `jti-${i}` }))
      record(0)
      record(1)
      await until(() => uploads.length === 1)
      record(2)
      record(3)
      // Built (serialized and compressed) while the first upload waits for its answer.
      await until(() => u.built === 4)
      record(4)
      record(5)
      // Two in flight, two built ahead, two buffered: the bound counts them all.
      record(6)
      assert.equal(u.held, 6)
      assert.equal(await counter(registry, 'aegis_decision_log_dropped_total', { reason: 'buffer_full' }), 1)
      open()
      await until(async () => (await counter(registry, 'aegis_decision_log_uploaded_total')) === 6)
      // The refused first upload went again, unchanged, before the batch built behind it.
      assert.deepEqual(uploads[1]!.body, uploads[0]!.body)
      assert.deepEqual(
        uploads.slice(1).flatMap((up) => up.body.records.map((r) => r.jti)),
        Array.from({ length: 6 }, (_, i) => `jti-${i}`),
      )
      assert.equal(u.held, 0)
    } finally {
      gate = null
      open()
      await u.close()
    }
  })

  test('closing right after a full batch was recorded sends every record once: close() alone sends what is left', async () => {
    uploads.length = 0
    const registry = new Registry()
    const u = new DecisionLogUploader(target, 'gw-t', silentLogger(), registry, { bufferSize: 100, batchSize: 2, flushIntervalMs: 60_000 })
    for (let i = 0; i < 6; i++) u.record(event({ jti: `close-${i}` }))
    // Before the upload the full buffer scheduled has started.
    await u.close()
    assert.equal(await counter(registry, 'aegis_decision_log_uploaded_total'), 6)
    assert.equal(await counter(registry, 'aegis_decision_log_dropped_total'), 0)
    assert.deepEqual(
      uploads.flatMap((up) => up.body.records.map((r) => r.jti)),
      Array.from({ length: 6 }, (_, i) => `close-${i}`),
    )
  })
})
