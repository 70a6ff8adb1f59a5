/**
 * Issue 14 item 2 on the SSE feed: a key change reaches a gateway on the
 * feed, so it refetches the JWKS at once whatever its unknown-kid cooldown
 * (30 s by default) and JWKS max-age (300 s).
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeProtectedHeader } from 'jose'
import { authorize, eventually, startGatewayEnv, type Credential, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'

const CALL = { action: { tool: 'crm.read' } }

describe('key changes on the SSE feed', () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let cred: Credential

  before(async () => {
    env = await startGatewayEnv()
    cred = await env.agent('rotating-bot', ['crm.read'])
    gw = await env.startGateway()
    assert.equal((await authorize(gw.url, await env.token(cred), CALL)).status, 200)
  })
  after(async () => {
    await env?.close()
  })

  test('after an emergency rotation the gateway accepts tokens of the new key and refuses the old one', async () => {
    const old = await env.token(cred)
    const r = await env.admin('POST', '/keys/rotate?emergency=true')
    const answered = performance.now()
    const fresh = await env.token(cred)
    assert.equal(decodeProtectedHeader(fresh).kid, r.current)
    const accepted = await eventually(async () => (await authorize(gw.url, fresh, CALL)).status === 200, 10_000, 2)
    console.log(
      `# SSE gateway accepts the new key ${(performance.now() - answered).toFixed(1)} ms after the rotation's answer (polling took ${accepted.toFixed(1)} ms)`,
    )
    const refused = await authorize(gw.url, old, CALL)
    assert.equal(refused.status, 401)
  })

  test('a scheduled-style rotation publishes the next key to the gateway at once, long before its JWKS max-age', async () => {
    const r = await env.admin('POST', '/keys/rotate')
    const next = r.next as string
    await eventually(async () => gw.gw.deps.verifier.jwks.getKey(next) !== undefined, 10_000, 5)
  })
})
