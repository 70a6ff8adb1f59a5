import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gatewayBearer, loadConfig, ConfigError } from '../../src/config/load.js'

test('defaults load and are frozen', () => {
  const c = loadConfig({ env: {} })
  assert.equal(c.control.port, 7400)
  assert.equal(c.gateway.port, 7401)
  assert.equal(c.audience, 'aegis-gateway')
  assert.equal(c.tokens.defaultTtlSeconds, 600)
  assert.throws(() => {
    ;(c.control as { port: number }).port = 1
  })
})

test('AEGIS_* variables override the file, and docs/reference.md names map to keys', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-cfg-'))
  const file = join(dir, 'c.json')
  writeFileSync(file, JSON.stringify({ control: { port: 9000 }, audience: 'from-file' }))
  const c = loadConfig({
    file,
    env: {
      AEGIS_CONTROL_PORT: '9100',
      AEGIS_ROUTES: '[{"path":"/tools/crm","upstream":"http://127.0.0.1:9000","mode":"proxy","tool":"crm.read"}]',
      AEGIS_DATABASE_URL: 'postgres://u@h/db',
    },
  })
  assert.equal(c.control.port, 9100)
  assert.equal(c.audience, 'from-file')
  assert.equal(c.gateway.routes[0]?.tool, 'crm.read')
  assert.equal(c.databaseUrl, 'postgres://u@h/db')
})

test('every problem is reported at once, with its path', () => {
  const err = (() => {
    try {
      loadConfig({
        env: {
          AEGIS_DATABASE_URL: 'mysql://db',
          AEGIS_KEYS_PRE_PUBLISH_SECONDS: '60',
          AEGIS_JWKS_MAX_AGE_SECONDS: '300',
          AEGIS_CONTROL_PORT: 'abc',
          AEGIS_NOPE: '1',
        },
      })
    } catch (e) {
      return e
    }
    return null
  })()
  assert.ok(err instanceof ConfigError)
  const text = err.problems.join('\n')
  assert.match(text, /AEGIS_DATABASE_URL: expected postgres:\/\//)
  assert.match(text, /keys.prePublishSeconds \(60\) must be at least jwks.maxAgeSeconds \(300\)/)
  assert.match(text, /AEGIS_CONTROL_PORT: expected an integer/)
  assert.match(text, /AEGIS_NOPE: unknown setting/)
})

test('unknown keys in the config file are rejected', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-cfg-'))
  const file = join(dir, 'c.json')
  writeFileSync(file, JSON.stringify({ control: { prot: 1 } }))
  assert.throws(() => loadConfig({ file, env: {} }), /unknown key "control.prot"/)
})

test('agent tokens can never be configured to live longer than an hour', () => {
  assert.throws(() => loadConfig({ env: { AEGIS_TOKENS_MAX_TTL_SECONDS: '7200' } }), /must not exceed 3600/)
})

test('a gateway without a bearer token for the control plane is a configuration error', () => {
  assert.throws(
    () => gatewayBearer(loadConfig({ env: {} })),
    (err: unknown) => err instanceof ConfigError && /AEGIS_GATEWAY_TOKEN \(role gateway\) or AEGIS_ADMIN_TOKEN/.test(err.message),
  )
  assert.equal(gatewayBearer(loadConfig({ env: { AEGIS_ADMIN_TOKEN: 'adm', AEGIS_GATEWAY_TOKEN: 'gw' } })), 'gw')
  assert.equal(gatewayBearer(loadConfig({ env: { AEGIS_ADMIN_TOKEN: 'adm' } })), 'adm')
})
