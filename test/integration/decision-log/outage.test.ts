/**
 * The decision log through a control-plane outage: a gateway whose control
 * plane is unreachable for 10 s keeps what fits its buffer and uploads it
 * once the control plane is back (nothing lost, nothing twice); past the
 * buffer it drops and counts (aegis_decision_log_dropped_total). The
 * outage is a real TCP relay between gateway and control plane, cut.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { authorize, eventually, metricValue, startGatewayEnv, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'
import { TcpRelay } from '../../helpers/tcp-relay.js'

const BUFFER = 50
const OUTAGE_MS = 10_000

describe('decision log: a control plane down for 10 s', () => {
  let env: GatewayEnv
  let relay: TcpRelay
  let gw: RunningGateway
  let token: string

  const stored = async (): Promise<number> => {
    const res = await fetch(`${env.issuer}/admin/v1/decisions?tenant=${env.tenant}&limit=1000`, { headers: { authorization: `Bearer ${env.adminToken}` } })
    return ((await res.json()) as { decisions: unknown[] }).decisions.length
  }
  const decide = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) assert.equal((await authorize(gw.url, token, { action: { tool: 'crm.read' } })).body.decision, 'allow')
  }
  const dropped = (reason: string): Promise<number> => metricValue(gw.url, 'aegis_decision_log_dropped_total', { reason })

  before(async () => {
    env = await startGatewayEnv()
    relay = await TcpRelay.start(new URL(env.issuer).port ? Number(new URL(env.issuer).port) : 80)
    gw = await env.startGateway({ controlPlaneUrl: `http://127.0.0.1:${relay.port}`, decisionLog: { bufferSize: BUFFER, batchSize: 20, flushIntervalMs: 50 } })
    token = await env.token(await env.agent('outage-bot', ['crm.read']))
    await decide(1)
    await eventually(async () => (await stored()) === 1, 20_000, 50)
  })
  after(async () => {
    await gw?.close()
    await relay?.close()
    await env?.close()
  })

  test('within the buffer bound nothing is lost and nothing stored twice', async () => {
    relay.cut()
    const start = performance.now()
    await decide(BUFFER - 10)
    await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_MS - (performance.now() - start))))
    assert.equal(await stored(), 1, 'nothing arrived during the outage')
    relay.heal()
    await eventually(async () => (await stored()) === 1 + BUFFER - 10, 30_000, 100)
    assert.equal(await dropped('buffer_full'), 0)
  })

  test('past the buffer bound the excess is dropped and counted, the rest arrives', async () => {
    const before = await stored()
    relay.cut()
    await decide(BUFFER + 30)
    relay.heal()
    await eventually(async () => (await stored()) === before + BUFFER, 30_000, 100)
    assert.equal(await dropped('buffer_full'), 30)
    // And no more arrives later: exactly the buffer's worth.
    await new Promise((r) => setTimeout(r, 500))
    assert.equal(await stored(), before + BUFFER)
  })
})
