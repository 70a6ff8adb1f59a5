/**
 * Decision-log benchmarks (issue 17 item 5):
 * - what the log costs a gateway at full speed: HTTP `POST /v1/authorize`
 *   with a reused token, 50 connections, against three gateway processes
 *   that follow the same control plane: one with `decisionLog.enabled`
 *   false, one uploading to that control plane, one uploading
 *   (`decisionLog.url`) to a stand-in that acknowledges without storing, as
 *   a control plane on other machines would cost this one nothing. Measured
 *   in alternating rounds of the same length so other load on the machine
 *   falls on all alike (goal: on ≥ 90 % of off). On one machine the real
 *   control plane's ingest work takes CPU from the gateway it measures.
 * - the control plane's ingest rate: decisions stored per second from gzip
 *   batches of 500 (as gateways send them), 4 uploads in flight, on SQLite
 *   and on PostgreSQL.
 */
import { randomBytes } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import autocannon from 'autocannon'
import { freshPostgresSchema, skipWithoutPostgres } from '../test/helpers/services.js'
import { adminCall, crmReaderToken, freePort, startDecisionSink, startServeProcess, type ServerProcess } from './server-process.js'
import { processIo, processTreeCpuMs } from './util.js'

const TENANT = 'acme'
const AGENT = 'billing-bot'

export interface DecisionLogCost {
  /** Uploading to the control plane on this machine. */
  onPerSec: number
  /** Uploading to a stand-in that acknowledges (gzip batches received, 202), no store. */
  onRemotePerSec: number
  offPerSec: number
  /** Decisions the logging gateway dropped (buffer full) during the run. */
  dropped: number
  /** Decisions the control plane stored during the run. */
  stored: number
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  return sum
}

/** Log off, on, on to a remote stand-in, side by side: `rounds` rotating autocannon runs per gateway, each `seconds / rounds` long. */
export async function benchDecisionLogCost(seconds: number, rounds = 6): Promise<DecisionLogCost> {
  const gatewayToken = `gw_${randomBytes(32).toString('base64url')}`
  const cpPort = await freePort()
  const issuer = `http://127.0.0.1:${cpPort}`
  const cp = await startServeProcess('control-plane', { AEGIS_GATEWAY_TOKEN: gatewayToken, AEGIS_CONTROL_PORT: String(cpPort), AEGIS_ISSUER: issuer })
  const gws: ServerProcess[] = []
  const sink = await startDecisionSink()
  const sinkUrl = sink.url
  try {
    const token = await crmReaderToken(cp, TENANT, AGENT)
    const on = await startServeProcess(
      'gateway',
      { AEGIS_GATEWAY_TOKEN: gatewayToken, AEGIS_ISSUER: issuer, AEGIS_GATEWAY_ID: 'bench-log-on', AEGIS_DECISION_LOG_ENABLED: 'true' },
      'AEGIS_GATEWAY_PORT',
    )
    gws.push(on)
    const off = await startServeProcess(
      'gateway',
      { AEGIS_GATEWAY_TOKEN: gatewayToken, AEGIS_ISSUER: issuer, AEGIS_GATEWAY_ID: 'bench-log-off', AEGIS_DECISION_LOG_ENABLED: 'false' },
      'AEGIS_GATEWAY_PORT',
    )
    gws.push(off)
    const remote = await startServeProcess(
      'gateway',
      {
        AEGIS_GATEWAY_TOKEN: gatewayToken,
        AEGIS_ISSUER: issuer,
        AEGIS_GATEWAY_ID: 'bench-log-remote',
        AEGIS_DECISION_LOG_ENABLED: 'true',
        AEGIS_DECISION_LOG_URL: sinkUrl,
      },
      'AEGIS_GATEWAY_PORT',
    )
    gws.push(remote)
    const request = {
      method: 'POST' as const,
      connections: 50,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ action: { tool: 'crm.read', params: { q: 'acme' } }, resource: 'crm:contacts' }),
    }
    for (const g of [on, off, remote]) await autocannon({ ...request, url: `${g.url}/v1/authorize`, duration: 2 })
    const storedBefore = await metric(cp.url, 'aegis_decision_log_stored_total')
    const droppedBefore = await metric(on.url, 'aegis_decision_log_dropped_total')
    const round = Math.max(1, Math.round(seconds / rounds))
    const total = new Map<ServerProcess, number>([
      [on, 0],
      [off, 0],
      [remote, 0],
    ])
    for (let i = 0; i < rounds; i++) {
      // Rotate which goes first, so none always follows another's upload backlog.
      const order = [
        [off, on, remote],
        [on, remote, off],
        [remote, off, on],
      ][i % 3]!
      for (const g of order) {
        const r = await autocannon({ ...request, url: `${g.url}/v1/authorize`, duration: round })
        if (r.non2xx + r.errors > 0) throw new Error(`gateway answered ${r.non2xx} non-2xx, ${r.errors} errors`)
        total.set(g, total.get(g)! + r.requests.total)
      }
    }
    // Let the last batches arrive before counting what was stored.
    await new Promise((r) => setTimeout(r, 3000))
    return {
      onPerSec: total.get(on)! / (round * rounds),
      onRemotePerSec: total.get(remote)! / (round * rounds),
      offPerSec: total.get(off)! / (round * rounds),
      dropped: (await metric(on.url, 'aegis_decision_log_dropped_total')) - droppedBefore,
      stored: (await metric(cp.url, 'aegis_decision_log_stored_total')) - storedBefore,
    }
  } finally {
    for (const g of gws) await g.stop()
    await cp.stop()
    await sink.close()
  }
}

function batch(gatewayId: string, n: number, t0: number, seq: { n: number }): Buffer {
  const records = Array.from({ length: n }, () => {
    const i = seq.n++
    return {
      id: randomBytes(16).toString('hex'),
      ts_ms: t0 + Math.floor(i / 50),
      type: 'decision',
      mode: 'authorize',
      decision: i % 10 === 0 ? 'deny' : 'allow',
      tenant: TENANT,
      agent_id: `agent-${i % 20}`,
      client_id: `cl_agent-${i % 20}`,
      jti: randomBytes(16).toString('base64url'),
      tool: i % 3 === 0 ? 'payments.transfer' : 'crm.read',
      resource: null,
      enforced: true,
      reasons: i % 10 === 0 ? ['forbid-large-transfers'] : [],
      policy_version: '2026-11-28.1',
      policy_ids: ['policy0'],
      risk: 'normal',
      latency_ms: 0.2,
      trace_id: null,
      params: { q: 'acme', amount: i % 1000 },
    }
  })
  return gzipSync(JSON.stringify({ gateway_id: gatewayId, records }), { level: 1 })
}

export interface IngestRate {
  storedPerSec: number
  /** The control plane's CPU (all its threads) per decision stored, µs. */
  cpuUsPerDecision: number
  /**
   * write(2)-family calls and bytes the control plane's process made per
   * decision stored (/proc/<pid>/io; NaN elsewhere): the WAL frames and the
   * checkpoints' copies.
   */
  writeCallsPerDecision: number
  writtenBytesPerDecision: number
  stored: number
  batches: number
}

/** Decisions stored per second by one control plane on `db`, from pre-compressed batches of 500 with 4 uploads in flight. */
export async function benchIngest(seconds: number, db: 'sqlite' | 'postgres'): Promise<IngestRate | null> {
  if (db === 'postgres' && (await skipWithoutPostgres())) return null
  const pgSchema = db === 'postgres' ? await freshPostgresSchema() : undefined
  const gatewayToken = `gw_${randomBytes(32).toString('base64url')}`
  const cp = await startServeProcess('control-plane', { AEGIS_GATEWAY_TOKEN: gatewayToken, ...(pgSchema ? { AEGIS_DATABASE_URL: pgSchema.url } : {}) })
  try {
    await adminCall(cp.url, cp.adminToken, 'POST', '/admin/v1/tenants', { id: TENANT, name: 'Bench' })
    const seq = { n: 0 }
    const t0 = Date.now()
    // Built before the clock starts: the figure is the control plane's, not this process's gzip.
    const pool = Array.from({ length: Math.ceil(seconds * 150) + 40 }, (_, i) => batch(`bench-gw-${i % 4}`, 500, t0, seq))
    let next = 0
    const post = async (body: Buffer): Promise<number> => {
      const res = await fetch(`${cp.url}/admin/v1/decisions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${gatewayToken}`, 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body,
      })
      const out = (await res.json()) as { stored?: number }
      if (res.status !== 202) throw new Error(`ingest answered ${res.status}: ${JSON.stringify(out)}`)
      return out.stored ?? 0
    }
    for (let i = 0; i < 8; i++) await post(pool[next++]!) // warm-up
    let stored = 0
    let batches = 0
    const cpu0 = processTreeCpuMs(cp.child.pid)
    const io0 = processIo(cp.child.pid)
    const start = performance.now()
    const deadline = start + seconds * 1000
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (performance.now() < deadline && next < pool.length) {
          // Awaited before adding: `stored += await …` would read stored before the await and lose the other uploads' counts.
          const n = await post(pool[next++]!)
          stored += n
          batches++
        }
      }),
    )
    const elapsed = (performance.now() - start) / 1000
    const cpuUsPerDecision = (1000 * (processTreeCpuMs(cp.child.pid) - cpu0)) / stored
    const io = processIo(cp.child.pid)
    if (next >= pool.length) process.stderr.write('bench: decision-log ingest ran out of prepared batches; the rate is a lower bound\n')
    return {
      storedPerSec: stored / elapsed,
      cpuUsPerDecision,
      writeCallsPerDecision: (io.syscw - io0.syscw) / stored,
      writtenBytesPerDecision: (io.wchar - io0.wchar) / stored,
      stored,
      batches,
    }
  } finally {
    await cp.stop()
    await pgSchema?.drop()
  }
}
