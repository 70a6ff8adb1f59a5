import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MAX_REQUEST_STATE_CHARS, RequestStateSealer, type RequestStateClaims } from '../../../src/gateway/modes/mcp/request-state.js'

const CLAIMS: RequestStateClaims = {
  aid: 'apr_0123456789abcdef',
  tenant: 'acme',
  agent: 'pay-bot',
  tool: 'payments.transfer',
  ph: 'n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg',
  res: '/mcp/pay',
  pv: '2026-12-01.1',
  exp: 1_800_000_000,
  jti: 'q1w2e3r4t5y6u7i8o9p0aa',
}

test('a sealed state opens to its claims with the same secret, on any sealer holding it', () => {
  const a = new RequestStateSealer('shared secret of the gateways')
  const b = new RequestStateSealer('shared secret of the gateways')
  assert.equal(a.shared, true)
  const state = a.seal(CLAIMS)
  assert.deepEqual(b.open(state), CLAIMS)
  assert.ok(!state.includes('pay-bot') && !state.includes('acme'), 'the claims are encrypted, not only signed')
  assert.notEqual(a.seal(CLAIMS), state, 'a fresh IV each time')
})

test('a state is refused when any byte changed, under another secret, or malformed', () => {
  const a = new RequestStateSealer('shared secret of the gateways')
  const state = a.seal(CLAIMS)
  const body = state.slice('aegis1.'.length)
  for (let i = 0; i < body.length; i += 7) {
    const c = body[i] === 'A' ? 'B' : 'A'
    assert.equal(a.open(`aegis1.${body.slice(0, i)}${c}${body.slice(i + 1)}`), null, `altered at ${i}`)
  }
  assert.equal(new RequestStateSealer('another secret').open(state), null)
  const perProcess = new RequestStateSealer(undefined)
  assert.equal(perProcess.shared, false)
  assert.equal(perProcess.open(state), null)
  for (const bad of [undefined, 42, '', 'aegis1.', state.slice(7), `aegis2.${body}`, `${state}=`, `aegis1.${'A'.repeat(MAX_REQUEST_STATE_CHARS)}`]) {
    assert.equal(a.open(bad), null, String(bad).slice(0, 20))
  }
})

test('a sealed payload missing a claim or with a wrong type is refused', () => {
  const a = new RequestStateSealer('shared secret of the gateways')
  const { jti: _jti, ...noJti } = CLAIMS
  assert.equal(a.open(a.seal(noJti as RequestStateClaims)), null)
  assert.equal(a.open(a.seal({ ...CLAIMS, exp: '1800000000' } as unknown as RequestStateClaims)), null)
})
