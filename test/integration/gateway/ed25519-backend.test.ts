import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { authorize, startGatewayEnv, type GatewayEnv } from '../../helpers/gateway-env.js'

// keys.ed25519 = node:crypto (e.g. a FIPS-validated OpenSSL): the control plane signs and the gateway verifies without libsodium.
let env: GatewayEnv
before(async () => {
  env = await startGatewayEnv({ overrides: { keys: { ed25519: 'node:crypto' } } })
})
after(async () => {
  await env?.close()
})

test('with keys.ed25519 node:crypto tokens are signed and verified by node:crypto, and decided as with libsodium', async () => {
  assert.equal(env.cp.deps.keys.signingBackend(), 'node:crypto')
  const gw = await env.startGateway({ keys: { ed25519: 'node:crypto' } })
  assert.equal(gw.gw.deps.verifier.ed25519Backend, 'node:crypto')
  const token = await env.token(await env.agent('fips-bot', ['crm.read']))
  const allowed = await authorize(gw.url, token, { action: { tool: 'crm.read', params: { q: 'acme' } } })
  assert.equal(allowed.status, 200)
  assert.equal(allowed.body.decision, 'allow')
  // A signature character that carries whole bits (the last one carries 2 and padding).
  const tampered = `${token.slice(0, -2)}${token.at(-2) === 'A' ? 'B' : 'A'}${token.slice(-1)}`
  assert.notEqual(tampered, token)
  assert.equal((await authorize(gw.url, tampered, { action: { tool: 'crm.read', params: {} } })).status, 401)

  // The default picks libsodium where it loads (it does on this platform).
  const auto = await env.startGateway({ keys: { ed25519: 'auto' } })
  assert.equal(auto.gw.deps.verifier.ed25519Backend, 'libsodium')
  assert.equal((await authorize(auto.url, token, { action: { tool: 'crm.read', params: {} } })).body.decision, 'allow')
})
