/**
 * Gateway liveness and readiness. (Readiness lost to a stale feed is in
 * degraded.test.ts; recovered after Redis restarts in redis-restart.test.ts.)
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { loadConfig } from '../../../src/config/load.js'
import { buildGateway } from '../../../src/gateway/index.js'
import { silentLogger } from '../../../src/observability/logger.js'
import { freePort, startGatewayEnv } from '../../helpers/gateway-env.js'

interface Ready {
  status: string
  reasons: string[]
}

test('a gateway without keys or feed is alive but not ready, and says why; one that loaded both is ready', async () => {
  const env = await startGatewayEnv()
  try {
    const dead = `http://127.0.0.1:${await freePort()}`
    const gw = await buildGateway(
      loadConfig({ env: {}, overrides: { issuer: env.issuer, controlPlaneUrl: dead, gatewayToken: env.gatewayToken, logLevel: 'silent' } }),
      { logger: silentLogger() },
    )
    await gw.app.listen({ port: 0, host: '127.0.0.1' })
    const url = `http://127.0.0.1:${(gw.app.server.address() as { port: number }).port}`
    try {
      const live = await fetch(`${url}/livez`)
      assert.equal(live.status, 200)
      assert.equal(live.headers.get('cache-control'), 'no-store')
      const r = await fetch(`${url}/readyz`)
      assert.equal(r.status, 503)
      assert.equal(r.headers.get('cache-control'), 'no-store')
      const body = (await r.json()) as Ready
      assert.equal(body.status, 'not_ready')
      assert.ok(
        body.reasons.some((x) => x.startsWith('jwks_not_loaded')),
        JSON.stringify(body.reasons),
      )
      assert.ok(
        body.reasons.some((x) => x.startsWith('feed_not_loaded')),
        JSON.stringify(body.reasons),
      )
    } finally {
      await gw.close()
    }
    const ok = await env.startGateway()
    const r = await fetch(`${ok.url}/readyz`)
    assert.equal(r.status, 200)
    assert.deepEqual(((await r.json()) as Ready).reasons, [])
  } finally {
    await env.close()
  }
})
