/** Route `allowed_origins` / `allowed_hosts` and the ext-authz header switches in the configuration. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ConfigError, loadConfig } from '../../src/config/load.js'

const mcp = (extra: Record<string, unknown>) => ({ gateway: { routes: [{ path: '/mcp', upstream: 'http://127.0.0.1:9000/mcp', mode: 'mcp', ...extra }] } })

test('an MCP route takes origins and hostnames, nothing else', () => {
  const cfg = loadConfig({
    env: {},
    overrides: mcp({ allowed_origins: ['https://app.example', 'http://127.0.0.1:8080'], allowed_hosts: ['gw.example', '[::1]'] }),
  })
  assert.deepEqual(cfg.gateway.routes[0]!.allowed_origins, ['https://app.example', 'http://127.0.0.1:8080'])
  for (const bad of [
    { allowed_origins: ['https://app.example/path'] },
    { allowed_origins: ['app.example'] },
    { allowed_origins: 'https://app.example' },
    { allowed_hosts: ['gw.example:443'] },
    { allowed_hosts: ['https://gw.example'] },
  ]) {
    assert.throws(
      () => loadConfig({ env: {}, overrides: mcp(bad) }),
      (err: unknown) => err instanceof ConfigError && /gateway\.routes\[0\]\.allowed_(origins|hosts)/.test(err.message),
      JSON.stringify(bad),
    )
  }
  assert.throws(
    () =>
      loadConfig({
        env: {},
        overrides: { gateway: { routes: [{ path: '/p', upstream: 'http://127.0.0.1:9000', mode: 'proxy', tool: 'crm.read', allowed_hosts: ['gw.example'] }] } },
      }),
    /MCP routes only/,
  )
})

test('ext-authz header switches default to off and read from the environment', () => {
  assert.deepEqual(loadConfig({ env: {} }).gateway.extAuthz, { toolHeader: false, resourceHeader: false })
  const on = loadConfig({ env: { AEGIS_GATEWAY_EXT_AUTHZ_TOOL_HEADER: 'true', AEGIS_GATEWAY_EXT_AUTHZ_RESOURCE_HEADER: '1' } })
  assert.deepEqual(on.gateway.extAuthz, { toolHeader: true, resourceHeader: true })
})

test("an MCP route's path, allow_methods and scopes are checked at load, every problem at once", () => {
  const cfg = loadConfig({ env: {}, overrides: mcp({ allow_methods: ['tools/call', 'notifications/*'], scopes: ['crm.read'] }) })
  assert.deepEqual(cfg.gateway.routes[0]!.allow_methods, ['tools/call', 'notifications/*'])
  const err = (() => {
    try {
      loadConfig({
        env: {},
        overrides: {
          gateway: { routes: [{ path: '//', upstream: 'http://127.0.0.1:9000/mcp', mode: 'mcp', allow_methods: ['tools/call', ''], scopes: 'crm.read' }] },
        },
      })
    } catch (e) {
      return e
    }
    return null
  })()
  assert.ok(err instanceof ConfigError)
  assert.deepEqual(err.problems, [
    'gateway.routes[0]: an MCP route needs a path other than /',
    'gateway.routes[0].allow_methods must be an array of JSON-RPC method names (a trailing /* allows a prefix)',
    'gateway.routes[0].scopes must be an array of strings',
  ])
  // Proxy routes have no such keys to check.
  assert.doesNotThrow(() =>
    loadConfig({ env: {}, overrides: { gateway: { routes: [{ path: '/', upstream: 'http://127.0.0.1:9000', mode: 'proxy', tool: 'crm.read' }] } } }),
  )
})
