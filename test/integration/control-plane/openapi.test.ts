/**
 * The admin API's OpenAPI document: the committed docs/openapi.json is what
 * a running control plane generates from its route schemas (rewrite it with
 * `npm run openapi`), it names every admin route, and it is served without a
 * token. Also: the admin guard refuses routes that do not say who may call
 * them, or that name a tenant outside the tenant scope.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createServer } from '../../../src/http/server.js'
import { installAdminGuard } from '../../../src/http/admin-auth.js'
import { createLogger } from '../../../src/observability/logger.js'
import { openApiText } from '../../../src/control-plane/openapi.js'
import { admin, startControlPlane, type Harness } from './harness.js'

const COMMITTED = new URL('../../../docs/openapi.json', import.meta.url)

/** `METHOD /path/{param}` of every route `printRoutes` lists under /admin/v1/ (HEAD left out: fastify adds it to every GET). */
function adminRoutesOf(tree: string): string[] {
  const out: string[] = []
  const stack: string[] = []
  for (const line of tree.split('\n')) {
    const m = /^((?:│ {3}| {4})*)(?:├── |└── )(\S+)(?: \(([^)]*)\))?$/.exec(line)
    if (!m) continue
    const depth = m[1]!.length / 4
    const path = (stack[depth - 1] ?? '') + m[2]!
    stack[depth] = path
    stack.length = depth + 1
    if (!m[3] || !path.startsWith('/admin/v1/')) continue
    for (const method of m[3].split(', ')) {
      if (method !== 'HEAD') out.push(`${method} ${path.replace(/:([A-Za-z_]+)/g, '{$1}')}`)
    }
  }
  return out.sort()
}

describe('OpenAPI document of the admin API', () => {
  let h: Harness
  before(async () => {
    h = await startControlPlane()
  })
  after(async () => {
    await h.close()
  })

  test('the committed docs/openapi.json is what the running control plane serves (npm run openapi rewrites it)', async () => {
    const r = await fetch(`${h.url}/admin/v1/openapi.json`)
    assert.equal(r.status, 200)
    assert.match(r.headers.get('content-type') ?? '', /^application\/json/)
    const served = `${JSON.stringify(await r.json(), null, 2)}\n`
    assert.equal(served, openApiText(h.cp.app))
    assert.equal(readFileSync(COMMITTED, 'utf8'), served, 'docs/openapi.json is stale: run `npm run openapi` and commit it')
  })

  test('every registered admin route is in the document, and nothing else', async () => {
    const doc = JSON.parse(openApiText(h.cp.app)) as { openapi: string; paths: Record<string, Record<string, unknown>> }
    assert.equal(doc.openapi, '3.1.0')
    const documented = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`))
      .sort()
    const registered = adminRoutesOf(h.cp.app.printRoutes({ commonPrefix: false }))
    assert.ok(registered.length >= 40, `only ${registered.length} admin routes parsed`)
    assert.ok(registered.includes('POST /admin/v1/tenants/{tenant}/agents'))
    assert.deepEqual(documented, registered)
  })

  test('inputs are described: tenant routes name the tenant parameter, bodies are closed objects', () => {
    const doc = JSON.parse(openApiText(h.cp.app)) as {
      paths: Record<
        string,
        Record<
          string,
          { parameters?: Array<{ name: string; in: string }>; requestBody?: { content: Record<string, { schema: { additionalProperties?: boolean } }> } }
        >
      >
    }
    for (const [path, ops] of Object.entries(doc.paths)) {
      if (!path.includes('{tenant}')) continue
      for (const op of Object.values(ops))
        assert.ok(
          op.parameters?.some((p) => p.name === 'tenant' && p.in === 'path'),
          path,
        )
    }
    const agents = doc.paths['/admin/v1/tenants/{tenant}/agents']!.post!
    assert.equal(agents.requestBody?.content['application/json']?.schema.additionalProperties, false)
  })

  test('the document is served without a token; the rest of /admin/v1 still needs one', async () => {
    assert.equal((await fetch(`${h.url}/admin/v1/openapi.json`)).status, 200)
    assert.equal((await fetch(`${h.url}/admin/v1/tenants`)).status, 401)
  })
})

describe('admin edge: schema validation and the guard', () => {
  let h: Harness
  before(async () => {
    h = await startControlPlane()
  })
  after(async () => {
    await h.close()
  })

  test('schema failures answer 400 invalid_request in the error format; auth and tenant access come first', async () => {
    const bad = await admin(h, h.adminToken, 'POST', '/tenants', { id: 'ok', extra: 1 })
    assert.equal(bad.status, 400)
    assert.equal(bad.body.error, 'invalid_request')
    assert.match(bad.body.error_description, /additional properties/)
    // No token: 401, whatever the body.
    const anon = await fetch(`${h.url}/admin/v1/tenants`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"id": 5}' })
    assert.equal(anon.status, 401)
    // A bad tenant id in the path is 400, a missing tenant 404 before its body is looked at.
    assert.equal((await admin(h, h.adminToken, 'GET', '/tenants/bad%20id/agents')).status, 400)
    assert.equal((await admin(h, h.adminToken, 'POST', '/tenants/missing/agents', { agent_id: 5 })).status, 404)
    // Query strings are not coerced: limit keeps its own pattern.
    const q = await admin(h, h.adminToken, 'GET', '/audit?limit=ten')
    assert.equal(q.status, 400)
    assert.equal(q.body.error, 'invalid_request')
  })

  test('a strict JSON body sent as a form is 415, as before', async () => {
    const r = await fetch(`${h.url}/admin/v1/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${h.adminToken}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'id=formed',
    })
    assert.equal(r.status, 415)
    assert.equal(((await r.json()) as { error: string }).error, 'unsupported_media_type')
    assert.equal(await h.deps.store.tenants.get('formed'), null)
  })

  test('a route without config.admin, or naming a tenant outside the tenant scope, is refused at start-up', async () => {
    for (const register of [
      (s: Parameters<typeof installAdminGuard>[0]) => {
        s.get('/forgot', async () => ({}))
      },
      (s: Parameters<typeof installAdminGuard>[0]) => {
        s.get('/tenants/:tenant/things', { config: { admin: { roles: ['admin'] } } }, async () => ({}))
      },
    ]) {
      const app = await createServer({ logger: createLogger('silent', 'test'), bodyLimit: 1024, jsonDepth: 8 })
      await assert.rejects(async () => {
        await app.register(
          async (scope) => {
            installAdminGuard(scope, h.deps.store)
            register(scope)
          },
          { prefix: '/admin/v1' },
        )
        await app.ready()
      }, /config\.admin|tenant scope/)
      await app.close().catch(() => {})
    }
  })
})
