import { test } from 'node:test'
import assert from 'node:assert/strict'
import { loadConfig } from '../../../src/config/load.js'
import { buildGateway } from '../../../src/gateway/index.js'
import { silentLogger } from '../../../src/observability/logger.js'
import { authorize, freePort, startGatewayEnv } from '../../helpers/gateway-env.js'

test('a gateway whose control plane is unreachable is not healthy and answers 503, then recovers when it appears', async () => {
  const env = await startGatewayEnv()
  try {
    const token = await env.token(await env.agent('early-bot', ['crm.read']))
    // Point a gateway at a port where nothing listens: no keys, no feed.
    const dead = `http://127.0.0.1:${await freePort()}`
    const gw = await buildGateway(
      loadConfig({ env: {}, overrides: { issuer: env.issuer, controlPlaneUrl: dead, gatewayToken: env.gatewayToken, logLevel: 'silent' } }),
      { logger: silentLogger() },
    )
    await gw.app.listen({ port: 0, host: '127.0.0.1' })
    const url = `http://127.0.0.1:${(gw.app.server.address() as { port: number }).port}`
    try {
      const h = await fetch(`${url}/healthz`)
      assert.equal(h.status, 503)
      assert.equal(((await h.json()) as { status: string }).status, 'starting')
      const r = await authorize(url, token, { action: { tool: 'crm.read' } })
      assert.equal(r.status, 503)
      assert.equal(r.body.error, 'temporarily_unavailable')
    } finally {
      await gw.close()
    }
    // The same token through a gateway that can reach the control plane is fine.
    const ok = await env.startGateway()
    assert.equal((await fetch(`${ok.url}/healthz`)).status, 200)
    assert.equal((await authorize(ok.url, token, { action: { tool: 'crm.read' } })).body.decision, 'allow')
  } finally {
    await env.close()
  }
})
