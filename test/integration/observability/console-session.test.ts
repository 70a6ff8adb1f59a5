import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyRequest } from 'fastify'
import { ConsoleSessions, deriveSessionKey, SESSION_COOKIE } from '../../../src/console/index.js'
import { ManualClock } from '../../../src/lib/clock.js'
import { sha256b64url } from '../../../src/lib/hash.js'
import { startGatewayEnv, type GatewayEnv } from '../../helpers/gateway-env.js'

interface Login { cookie: string; csrf: string; setCookie: string }

describe('console login, session cookie, CSRF and security headers', () => {
  let env: GatewayEnv
  let base: string

  const login = async (token: string): Promise<Login> => {
    const res = await fetch(`${base}/console/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) })
    assert.equal(res.status, 200)
    const setCookie = res.headers.get('set-cookie')!
    const body = (await res.json()) as { csrf: string }
    return { cookie: setCookie.split(';')[0]!, csrf: body.csrf, setCookie }
  }
  const call = (method: string, path: string, headers: Record<string, string>, body?: unknown) => fetch(`${base}${path}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    redirect: 'manual',
  })

  before(async () => {
    env = await startGatewayEnv()
    base = env.issuer
  })
  after(async () => { await env?.close() })

  test('login sets an HttpOnly, SameSite=Strict, Path=/ cookie and the admin API accepts it', async () => {
    const s = await login(env.adminToken)
    assert.match(s.setCookie, /^aegis_session=v1\.[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/)
    assert.ok(!s.setCookie.includes(env.adminToken))
    const res = await call('GET', '/admin/v1/kpis', { cookie: s.cookie })
    assert.equal(res.status, 200)
    const who = (await (await call('GET', '/console/session', { cookie: s.cookie })).json()) as { role: string; tenant: string | null; csrf: string }
    assert.equal(who.role, 'admin')
    assert.equal(who.tenant, null)
    assert.equal(who.csrf, s.csrf)
  })

  test('a form login redirects to the console; a bad token changes nothing and sets no cookie', async () => {
    const ok = await fetch(`${base}/console/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${encodeURIComponent(env.adminToken)}`, redirect: 'manual' })
    assert.equal(ok.status, 303)
    assert.equal(ok.headers.get('location'), '/console/')
    assert.ok(ok.headers.get('set-cookie'))
    const bad = await fetch(`${base}/console/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=wrong', redirect: 'manual' })
    assert.equal(bad.status, 303)
    assert.equal(bad.headers.get('location'), '/console/?login=failed')
    assert.equal(bad.headers.get('set-cookie'), null)
    const json = await fetch(`${base}/console/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: env.gatewayToken }) })
    assert.equal(json.status, 401, 'gateway tokens cannot open console sessions')
    assert.equal(json.headers.get('set-cookie'), null)
  })

  test('a cookie-authenticated POST without the CSRF token, or from another origin, is 403 and changes nothing', async () => {
    const s = await login(env.adminToken)
    const noCsrf = await call('POST', '/admin/v1/tenants', { cookie: s.cookie }, { id: 'csrf-a', name: 'A' })
    assert.equal(noCsrf.status, 403)
    assert.equal(((await noCsrf.json()) as { error: string }).error, 'forbidden')
    const wrong = await call('POST', '/admin/v1/tenants', { cookie: s.cookie, 'x-aegis-csrf': s.csrf.slice(1) + 'A' }, { id: 'csrf-a', name: 'A' })
    assert.equal(wrong.status, 403)
    const otherOrigin = await call('POST', '/admin/v1/tenants', { cookie: s.cookie, 'x-aegis-csrf': s.csrf, origin: 'https://evil.example' }, { id: 'csrf-a', name: 'A' })
    assert.equal(otherOrigin.status, 403)
    const other = await login(env.adminToken)
    assert.equal((await call('POST', '/admin/v1/tenants', { cookie: s.cookie, 'x-aegis-csrf': other.csrf }, { id: 'csrf-a', name: 'A' })).status, 403, 'another session\'s CSRF token does not fit')
    assert.equal((await call('GET', '/admin/v1/tenants/csrf-a', { authorization: `Bearer ${env.adminToken}` })).status, 404)
    const ok = await call('POST', '/admin/v1/tenants', { cookie: s.cookie, 'x-aegis-csrf': s.csrf, origin: base }, { id: 'csrf-a', name: 'A' })
    assert.equal(ok.status, 201)
    // Bearer calls need no CSRF token.
    assert.equal((await call('POST', '/admin/v1/tenants', { authorization: `Bearer ${env.adminToken}` }, { id: 'csrf-b', name: 'B' })).status, 201)
    // Login itself refuses a foreign Origin.
    const foreign = await fetch(`${base}/console/login`, { method: 'POST', headers: { 'content-type': 'application/json', origin: 'https://evil.example' }, body: JSON.stringify({ token: env.adminToken }) })
    assert.equal(foreign.status, 403)
  })

  test('a forged or tampered cookie is not a session', async () => {
    const s = await login(env.adminToken)
    const [name, value] = s.cookie.split('=') as [string, string]
    const parts = value.split('.')
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString()) as Record<string, unknown>
    claims.exp = (claims.exp as number) + 1e9
    const forged = `${name}=v1.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${parts[2]}`
    assert.equal((await call('GET', '/admin/v1/kpis', { cookie: forged })).status, 401)
    assert.equal((await call('GET', '/admin/v1/kpis', { cookie: `${name}=garbage` })).status, 401)
  })

  test('revoking the admin token ends its console sessions; logout clears the cookie', async () => {
    const created = (await env.admin('POST', '/admin-tokens', { tenant: null, role: 'admin', name: 'console-revoke' })) as { id: string; token: string }
    const s = await login(created.token)
    assert.equal((await call('GET', '/admin/v1/kpis', { cookie: s.cookie })).status, 200)
    await env.admin('DELETE', `/admin-tokens/${created.id}`)
    assert.equal((await call('GET', '/admin/v1/kpis', { cookie: s.cookie })).status, 401)
    const t = await login(env.adminToken)
    assert.equal((await call('POST', '/console/logout', { cookie: t.cookie })).status, 403, 'logout needs the CSRF token')
    const out = await call('POST', '/console/logout', { cookie: t.cookie, 'x-aegis-csrf': t.csrf })
    assert.equal(out.status, 204)
    assert.match(out.headers.get('set-cookie') ?? '', /^aegis_session=; Path=\/; HttpOnly; SameSite=Strict; Max-Age=0/)
  })

  test('a tenant admin session sees only its tenant through the admin API', async () => {
    await env.admin('POST', '/tenants', { id: 'other-co', name: 'Other' })
    await env.admin('POST', '/tenants/other-co/agents', { agent_id: 'secret-bot', scopes: [], capabilities: ['crm.read'], max_ttl_seconds: 300 })
    const tok = (await env.admin('POST', '/admin-tokens', { tenant: env.tenant, role: 'admin', name: 'tenant-console' })) as { token: string }
    const s = await login(tok.token)
    const h = { cookie: s.cookie }
    assert.equal((await call('GET', `/admin/v1/tenants/${env.tenant}/agents`, h)).status, 200)
    for (const path of ['/admin/v1/tenants/other-co/agents', '/admin/v1/tenants/other-co/policies', '/admin/v1/audit?tenant=other-co', '/admin/v1/approvals?tenant=other-co', '/admin/v1/keys']) {
      const res = await call('GET', path, h)
      assert.equal(res.status, 403, path)
      assert.ok(!(await res.text()).includes('secret-bot'))
    }
    const tenants = (await (await call('GET', '/admin/v1/tenants', h)).json()) as { tenants: Array<{ id: string }> }
    assert.deepEqual(tenants.tenants.map((t) => t.id), [env.tenant])
    const audit = (await (await call('GET', '/admin/v1/audit?limit=1000', h)).json()) as { events: Array<{ tenant: string | null }> }
    assert.ok(audit.events.every((e) => e.tenant === env.tenant))
    assert.equal((await call('POST', '/admin/v1/audit/verify', { ...h, 'x-aegis-csrf': s.csrf })).status, 403)
    assert.equal((await call('POST', '/admin/v1/tenants/other-co/agents', { ...h, 'x-aegis-csrf': s.csrf }, { agent_id: 'x', scopes: [], capabilities: [], max_ttl_seconds: 60 })).status, 403)
  })

  test('a session ends at its expiry; a cookie MAC\'d under another KEK is refused', async () => {
    const clock = new ManualClock(Date.now())
    const key = deriveSessionKey(Buffer.alloc(32, 7))
    const sessions = new ConsoleSessions(key, env.cp.deps.store, clock, 60_000)
    const token = (await env.cp.deps.store.adminTokens.getByHash(sha256b64url(env.adminToken)))!
    const { cookie } = sessions.open(token)
    const request = { method: 'GET', headers: { cookie: `${SESSION_COOKIE}=${cookie}` } } as unknown as FastifyRequest
    assert.equal((await sessions.resolve(request))?.token.id, token.id)
    const elsewhere = new ConsoleSessions(deriveSessionKey(Buffer.alloc(32, 8)), env.cp.deps.store, clock, 60_000)
    assert.equal(await elsewhere.resolve(request), null)
    const sameKek = new ConsoleSessions(deriveSessionKey(Buffer.alloc(32, 7)), env.cp.deps.store, clock, 60_000)
    assert.equal((await sameKek.resolve(request))?.token.id, token.id, 'another control plane with the same KEK accepts it')
    clock.advance(60_000)
    assert.equal(await sessions.resolve(request), null)
  })

  test('console pages carry CSP, frame, nosniff and referrer headers; only known files are served', async () => {
    for (const path of ['/console/', '/console/static/app.js', '/console/static/style.css', '/console/session']) {
      const res = await fetch(`${base}${path}`)
      const csp = res.headers.get('content-security-policy') ?? ''
      assert.match(csp, /default-src 'self'/, path)
      assert.match(csp, /frame-ancestors 'none'/, path)
      assert.ok(!csp.includes('unsafe-inline'), path)
      assert.equal(res.headers.get('x-frame-options'), 'DENY', path)
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path)
      assert.equal(res.headers.get('referrer-policy'), 'same-origin', path)
    }
    const html = await (await fetch(`${base}/console/`)).text()
    assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/.test(html), 'no inline script')
    assert.ok(!/\sstyle=|\son[a-z]+=/.test(html), 'no inline style or handler attributes')
    for (const p of ['/console/static/..%2F..%2Fpackage.json', '/console/static/index.js', '/console/static/.env']) {
      assert.equal((await fetch(`${base}${p}`)).status, 404, p)
    }
    assert.equal((await fetch(`${base}/console/session`)).status, 401)
  })
})
