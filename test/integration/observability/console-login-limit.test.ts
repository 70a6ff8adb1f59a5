import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { startGatewayEnv, type GatewayEnv } from '../../helpers/gateway-env.js'

let env: GatewayEnv
before(async () => {
  // Windows are aligned to the clock: with the default 60 s one, 35 attempts could straddle a boundary on a slow machine and
  // start counting again. A window of a year (boundaries at multiples of it since 1970) keeps the whole test in one.
  env = await startGatewayEnv({ overrides: { rateLimit: { perClient: 1_000_000, perIp: 10_000_000, windowSeconds: 365 * 86_400 } } })
})
after(async () => {
  await env?.close()
})

test('console login attempts from one address are limited, so failures cannot flood the audit log', async () => {
  const attempt = () =>
    fetch(`${env.issuer}/console/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: 'not-a-valid-admin-token' }),
    })
  const statuses: number[] = []
  for (let i = 0; i < 35; i++) statuses.push((await attempt()).status)
  assert.deepEqual(statuses.slice(0, 30), Array(30).fill(401))
  const limited = await attempt()
  assert.equal(limited.status, 429)
  assert.equal(((await limited.json()) as { error: string }).error, 'rate_limited')
  assert.ok(Number(limited.headers.get('retry-after')) >= 1)
  // Even the right token waits for the window: the limit counts attempts, not failures.
  const good = await fetch(`${env.issuer}/console/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: env.adminToken }),
  })
  assert.equal(good.status, 429)
  const audit = await fetch(`${env.issuer}/admin/v1/audit?type=auth.failed&limit=1000`, { headers: { authorization: `Bearer ${env.adminToken}` } })
  const events = ((await audit.json()) as { events: Array<{ subject: string }> }).events.filter((e) => e.subject === 'console.login')
  assert.equal(events.length, 30)
})
