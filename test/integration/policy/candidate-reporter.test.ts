import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { CandidateDiffReporter } from '../../../src/gateway/candidate-reporter.js'
import { ControlPlaneClient } from '../../../src/gateway/control-plane-client.js'
import type { GatewayAuditEvent } from '../../../src/gateway/deps.js'
import { LogDecisionSink } from '../../../src/gateway/decision-sink.js'
import { pino } from 'pino'
import { silentLogger } from '../../../src/observability/logger.js'
import type { Decision } from '../../../src/policy/types.js'

interface Report {
  gateway_id: string
  samples: Array<Record<string, unknown>>
}

/** A stand-in control plane: records every report, answers with the status the test sets. */
describe('CandidateDiffReporter', () => {
  let server: Server
  let url = ''
  const reports: Report[] = []
  const raw: string[] = []
  let status = 202

  before(async () => {
    server = createServer((req, res) => {
      let body = ''
      req.on('data', (d: Buffer) => {
        body += d.toString()
      })
      req.on('end', () => {
        raw.push(body)
        if (status === 202) reports.push(JSON.parse(body) as Report)
        res.writeHead(status, { 'content-type': 'application/json' }).end(status === 202 ? '{"accepted":1,"ignored":0}' : '{"error":"invalid_request"}')
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(async () => {
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  })

  const JTI = 'jti-secret-looking-0123456789'
  const event = (from: Decision, to: Decision, params: Record<string, unknown>, agent = 'bot-1', tool = 'payments.charge'): GatewayAuditEvent => {
    const candidate = { version: 'v2', decision: to }
    Object.defineProperty(candidate, 'sample', {
      value: { activeDecision: from, params, obligations: [{ type: 'redact', path: '/params/card_number' }] },
      enumerable: false,
    })
    return {
      type: 'decision',
      ts: 1_767_225_600_000,
      gateway_id: 'gw',
      mode: 'authorize',
      tenant: 'acme',
      agent_id: agent,
      client_id: 'c',
      jti: JTI,
      tool,
      resource: null,
      decision: from,
      enforced: true,
      policy_version: 'v1',
      candidate,
    }
  }

  test('samples carry both decisions; params only for changed ones, sanitized, at most five per change; never the jti', async () => {
    reports.length = 0
    const r = new CandidateDiffReporter(new ControlPlaneClient(url, 'gw-token'), 'gw-1', silentLogger(), { intervalMs: 60_000 })
    for (let i = 0; i < 8; i++) r.record(event('sanitize', 'deny', { amount: 3000 + i, card_number: '4111111111111111', memo: 'm'.repeat(500) }))
    r.record(event('allow', 'allow', { amount: 1, card_number: '4111111111111111' }, 'bot-2', 'payments.get'))
    r.record({ ...event('allow', 'deny', {}), agent_id: null })
    r.record({
      type: 'token.refused',
      ts: 1,
      gateway_id: 'gw',
      mode: 'authorize',
      tenant: null,
      agent_id: null,
      client_id: null,
      jti: null,
      tool: null,
      resource: null,
    })
    await r.close()
    assert.equal(reports.length, 1)
    const s = reports[0]!.samples
    assert.equal(reports[0]!.gateway_id, 'gw-1')
    assert.equal(s.length, 9)
    const changed = s.filter((x) => x.candidate_decision !== x.active_decision)
    assert.equal(changed.length, 8)
    assert.ok(
      changed.every(
        (x) =>
          x.active_decision === 'sanitize' &&
          x.candidate_decision === 'deny' &&
          x.active_version === 'v1' &&
          x.candidate_version === 'v2' &&
          x.tenant === 'acme',
      ),
    )
    const withParams = changed.filter((x) => x.params !== undefined)
    assert.equal(withParams.length, 5)
    for (const x of withParams) {
      const p = x.params as Record<string, unknown>
      assert.notEqual(p.card_number, '4111111111111111')
      assert.ok((p.memo as string).length < 64)
    }
    assert.equal(s.find((x) => x.tool === 'payments.get')!.params, undefined)
    assert.ok(!raw.join('').includes(JTI))
    assert.ok(!raw.join('').includes('4111111111111111'))
  })

  test('the sample parameters never reach a log line', () => {
    const lines: string[] = []
    const logger = pino(
      { level: 'info' },
      {
        write: (l: string) => {
          lines.push(l)
        },
      },
    )
    new LogDecisionSink(logger).record(event('sanitize', 'deny', { card_number: '4111111111111111' }))
    assert.equal(lines.length, 1)
    assert.match(lines[0]!, /"candidate":\{"version":"v2","decision":"deny"\}/)
    assert.ok(!lines[0]!.includes('4111111111111111'))
  })

  test('the queue is bounded, a report stays under the size bound, and a refused report is dropped', async () => {
    reports.length = 0
    raw.length = 0
    const r = new CandidateDiffReporter(new ControlPlaneClient(url, 'gw-token'), 'gw-1', silentLogger(), {
      intervalMs: 60_000,
      maxQueue: 300,
      maxReportBytes: 8 * 1024,
    })
    for (let i = 0; i < 400; i++) r.record(event('allow', 'allow', {}, `bot-${i % 7}`))
    assert.equal(r.dropped, 100)
    await r.flush()
    assert.equal(reports.length, 1)
    assert.ok(raw[0]!.length <= 8 * 1024)
    assert.ok(reports[0]!.samples.length < 300)
    status = 400
    await r.flush()
    assert.equal(reports.length, 1)
    status = 202
    await r.close()
    assert.equal(r.sent + r.dropped, 400)
    assert.ok(r.dropped > 100)
  })
})
