import { test } from 'node:test'
import assert from 'node:assert/strict'
import { loadConfig, ConfigError } from '../../src/config/load.js'

function problems(env: Record<string, string>): string {
  try {
    loadConfig({ env })
  } catch (e) {
    assert.ok(e instanceof ConfigError)
    return e.problems.join('\n')
  }
  return ''
}

test('the default issuer names the port the control plane listens on', () => {
  assert.equal(loadConfig({ env: {} }).issuer, 'http://127.0.0.1:7400')
  assert.equal(loadConfig({ env: { AEGIS_CONTROL_PORT: '17500', AEGIS_GATEWAY_PORT: '17501' } }).issuer, 'http://127.0.0.1:17500')
  assert.equal(loadConfig({ env: { AEGIS_CONTROL_HOST: '0.0.0.0', AEGIS_CONTROL_PORT: '8080' } }).issuer, 'http://127.0.0.1:8080')
  assert.equal(loadConfig({ env: { AEGIS_CONTROL_HOST: '::', AEGIS_CONTROL_PORT: '8080' } }).issuer, 'http://[::1]:8080')
  assert.equal(loadConfig({ env: { AEGIS_CONTROL_HOST: 'aegis.internal', AEGIS_CONTROL_PORT: '8080' } }).issuer, 'http://aegis.internal:8080')
})

test('an issuer that is set wins over the derived one', () => {
  assert.equal(loadConfig({ env: { AEGIS_CONTROL_PORT: '17500', AEGIS_ISSUER: 'https://id.example.com' } }).issuer, 'https://id.example.com')
})

test('port settings outside 0-65535 fail at configuration time, naming the variable', () => {
  assert.match(problems({ AEGIS_CONTROL_PORT: '70000' }), /AEGIS_CONTROL_PORT: expected an integer from 0 to 65535, got "70000"/)
  assert.match(problems({ AEGIS_GATEWAY_PORT: '-1' }), /AEGIS_GATEWAY_PORT: expected an integer from 0 to 65535/)
  const both = problems({ AEGIS_CONTROL_TLS_PORT: '65536', AEGIS_GATEWAY_TLS_PORT: '99999', AEGIS_TLS_CERT: '/c.pem', AEGIS_TLS_KEY: '/k.pem' })
  assert.match(both, /AEGIS_CONTROL_TLS_PORT: expected an integer from 0 to 65535/)
  assert.match(both, /AEGIS_GATEWAY_TLS_PORT: expected an integer from 0 to 65535/)
  assert.equal(loadConfig({ env: { AEGIS_GATEWAY_PORT: '65535' } }).gateway.port, 65535)
})

test('control.port 0 (any free port) needs an explicit issuer, since a default could not name the port', () => {
  assert.match(problems({ AEGIS_CONTROL_PORT: '0' }), /control.port 0 .* set issuer \(AEGIS_ISSUER\)/)
  assert.equal(loadConfig({ env: { AEGIS_CONTROL_PORT: '0', AEGIS_ISSUER: 'http://127.0.0.1:9' } }).control.port, 0)
})
