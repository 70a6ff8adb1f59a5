import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyRequest } from 'fastify'
import { ConsoleSessions, deriveSessionKey, SESSION_COOKIE } from '../../../src/control-plane/console/index.js'
import { Unavailable } from '../../../src/errors.js'
import { ManualClock } from '../../../src/lib/clock.js'
import { sha256b64url } from '../../../src/lib/hash.js'
import { openSqliteStore } from '../../../src/store/index.js'
import type { AdminToken } from '../../../src/store/types.js'
import { startGatewayEnv, type GatewayEnv } from '../../helpers/gateway-env.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../../helpers/services.js'
import { startControlPlane } from '../control-plane/harness.js'

interface Login {
  cookie: string
  csrf: string
  setCookie: string
}

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
  const call = (method: string, path: string, headers: Record<string, string>, body?: unknown) =>
    fetch(`${base}${path}`, {
      method,
      headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      redirect: 'manual',
    })

  before(async () => {
    env = await startGatewayEnv()
    base = env.issuer
  })
  after(async () => {
    await env?.close()
  })

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
    const ok = await fetch(`${base}/console/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${encodeURIComponent(env.adminToken)}`,
      redirect: 'manual',
    })
    assert.equal(ok.status, 303)
    assert.equal(ok.headers.get('location'), '/console/')
    assert.ok(ok.headers.get('set-cookie'))
    const bad = await fetch(`${base}/console/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'token=wrong',
      redirect: 'manual',
    })
    assert.equal(bad.status, 303)
    assert.equal(bad.headers.get('location'), '/console/?login=failed')
    assert.equal(bad.headers.get('set-cookie'), null)
    const json = await fetch(`${base}/console/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: env.gatewayToken }),
    })
    assert.equal(json.status, 401, 'gateway tokens cannot open console sessions')
    assert.equal(json.headers.get('set-cookie'), null)
  })

  test('a cookie-authenticated POST without the CSRF token, or from another origin, is 403 and changes nothing', async () => {
    const s = await login(env.adminToken)
    const noCsrf = await call('POST', '/admin/v1/tenants', { cookie: s.cookie }, { id: 'csrf-a', name: 'A' })
    assert.equal(noCsrf.status, 403)
    assert.equal(((await noCsrf.json()) as { error: string }).error, 'forbidden')
    const wrong = await call('POST', '/admin/v1/tenants', { cookie: s.cookie, 'x-aegis-csrf': `${s.csrf.slice(1)}A` }, { id: 'csrf-a', name: 'A' })
    assert.equal(wrong.status, 403)
    const otherOrigin = await call(
      'POST',
      '/admin/v1/tenants',
      { cookie: s.cookie, 'x-aegis-csrf': s.csrf, origin: 'https://evil.example' },
      { id: 'csrf-a', name: 'A' },
    )
    assert.equal(otherOrigin.status, 403)
    const other = await login(env.adminToken)
    assert.equal(
      (await call('POST', '/admin/v1/tenants', { cookie: s.cookie, 'x-aegis-csrf': other.csrf }, { id: 'csrf-a', name: 'A' })).status,
      403,
      "another session's CSRF token does not fit",
    )
    assert.equal((await call('GET', '/admin/v1/tenants/csrf-a', { authorization: `Bearer ${env.adminToken}` })).status, 404)
    const ok = await call('POST', '/admin/v1/tenants', { cookie: s.cookie, 'x-aegis-csrf': s.csrf, origin: base }, { id: 'csrf-a', name: 'A' })
    assert.equal(ok.status, 201)
    // Bearer calls need no CSRF token.
    assert.equal((await call('POST', '/admin/v1/tenants', { authorization: `Bearer ${env.adminToken}` }, { id: 'csrf-b', name: 'B' })).status, 201)
    // Login itself refuses a foreign Origin.
    const foreign = await fetch(`${base}/console/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: 'https://evil.example' },
      body: JSON.stringify({ token: env.adminToken }),
    })
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

  test('logout ends the session: the replayed cookie gets exactly the answer of an invalid one; another session of the token still works', async () => {
    const a = await login(env.adminToken)
    const b = await login(env.adminToken)
    assert.equal((await call('GET', '/admin/v1/kpis', { cookie: a.cookie })).status, 200)
    const out = await call('POST', '/console/logout', { cookie: a.cookie, 'x-aegis-csrf': a.csrf })
    assert.equal(out.status, 204)
    assert.match(out.headers.get('set-cookie') ?? '', /^aegis_session=; Path=\/; HttpOnly; SameSite=Strict; Max-Age=0/)

    // What the browser would send had it kept (or had someone copied) the cookie.
    const invalid = `${SESSION_COOKIE}=v1.${a.cookie.split('.')[1]}.${'A'.repeat(43)}`
    const answer = async (cookie: string, method: string, path: string, body?: unknown) => {
      const res = await call(method, path, { cookie, 'x-aegis-csrf': a.csrf }, body)
      return { status: res.status, body: await res.text(), auth: res.headers.get('www-authenticate'), setCookie: res.headers.get('set-cookie') }
    }
    const routes: Array<[string, string, unknown?]> = [
      ['GET', '/console/session'],
      ['GET', '/admin/v1/kpis'],
      ['GET', '/admin/v1/tenants'],
      ['GET', '/admin/v1/admin-tokens'],
      ['POST', '/admin/v1/tenants', { id: 'after-logout', name: 'X' }],
      ['POST', '/console/logout'],
    ]
    for (const [method, path, body] of routes) {
      const replayed = await answer(a.cookie, method, path, body)
      assert.deepEqual(replayed, await answer(invalid, method, path, body), `${method} ${path}`)
      if (path !== '/console/logout') assert.equal(replayed.status, 401, `${method} ${path}`)
    }
    assert.equal(
      (await call('GET', '/admin/v1/tenants/after-logout', { authorization: `Bearer ${env.adminToken}` })).status,
      404,
      'the replayed cookie changed nothing',
    )

    assert.equal((await call('GET', '/admin/v1/kpis', { cookie: b.cookie })).status, 200, 'the other session is untouched')
    const who = await call('GET', '/console/session', { cookie: b.cookie })
    assert.equal(who.status, 200)
    assert.equal(((await who.json()) as { csrf: string }).csrf, b.csrf)
    assert.equal((await call('POST', '/admin/v1/tenants', { cookie: b.cookie, 'x-aegis-csrf': b.csrf }, { id: 'still-in', name: 'Y' })).status, 201)
    assert.equal((await call('GET', '/admin/v1/kpis', { authorization: `Bearer ${env.adminToken}` })).status, 200, 'the admin token itself is untouched')
    const c = await login(env.adminToken)
    assert.equal((await call('GET', '/admin/v1/kpis', { cookie: c.cookie })).status, 200, 'the token can open new sessions')
  })

  test('a logout is kept until the session would have expired, then purged; a store that cannot record it fails the logout', async () => {
    const store = await openSqliteStore(':memory:')
    try {
      const token: AdminToken = {
        id: 'at_purge',
        tenant: null,
        role: 'admin',
        name: 'purge',
        tokenHash: 'th',
        linkedIdentities: [],
        groups: [],
        createdAt: 0,
        revokedAt: null,
      }
      await store.adminTokens.create(token)
      const clock = new ManualClock(Date.now())
      const sessions = new ConsoleSessions(deriveSessionKey(Buffer.alloc(32, 9)), store, clock, 60_000)
      const req = (cookie: string) => ({ method: 'GET', headers: { cookie: `${SESSION_COOKIE}=${cookie}` } }) as unknown as FastifyRequest
      const a = sessions.open(token)
      const b = sessions.open(token)
      await sessions.end((await sessions.resolve(req(a.cookie)))!)
      assert.equal(await sessions.resolve(req(a.cookie)), null)
      assert.equal((await sessions.resolve(req(b.cookie)))?.claims.sid, b.claims.sid)
      assert.equal(await store.consoleLogouts.has(a.claims.sid), true)

      clock.advance(59_999)
      const c = sessions.open(token)
      await sessions.end((await sessions.resolve(req(c.cookie)))!)
      assert.equal(await store.consoleLogouts.has(a.claims.sid), true, 'a logout made before the session expired is not purged yet')
      assert.equal(await sessions.resolve(req(a.cookie)), null)

      clock.advance(1)
      const d = sessions.open(token)
      await sessions.end((await sessions.resolve(req(d.cookie)))!)
      assert.equal(await store.consoleLogouts.has(a.claims.sid), false, 'purged once the session expired')
      assert.equal(await store.consoleLogouts.has(c.claims.sid), true)
      assert.equal(await sessions.resolve(req(a.cookie)), null, 'and the cookie is refused as expired')

      const e = sessions.open(token)
      const live = (await sessions.resolve(req(e.cookie)))!
      const failing = new ConsoleSessions(
        deriveSessionKey(Buffer.alloc(32, 9)),
        {
          ...store,
          consoleLogouts: {
            ...store.consoleLogouts,
            add: async () => {
              throw new Error('store down')
            },
          },
        },
        clock,
        60_000,
      )
      await assert.rejects(failing.end(live), /store down/)
    } finally {
      await store.close()
    }
  })

  test('a logout the store cannot record is a 503 that still clears the cookie, never a 204', async () => {
    const repo = env.cp.deps.store.consoleLogouts
    const add = repo.add
    const s = await login(env.adminToken)
    repo.add = async () => {
      throw new Unavailable('storage unavailable')
    }
    try {
      const out = await call('POST', '/console/logout', { cookie: s.cookie, 'x-aegis-csrf': s.csrf })
      assert.equal(out.status, 503)
      assert.equal(((await out.json()) as { error: string }).error, 'temporarily_unavailable')
      assert.match(out.headers.get('set-cookie') ?? '', /^aegis_session=; Path=\/; .*Max-Age=0/)
    } finally {
      repo.add = add
    }
    const again = await call('POST', '/console/logout', { cookie: s.cookie, 'x-aegis-csrf': s.csrf })
    assert.equal(again.status, 204)
    assert.equal((await call('GET', '/console/session', { cookie: s.cookie })).status, 401)
  })

  test('a tenant admin session sees only its tenant through the admin API', async () => {
    await env.admin('POST', '/tenants', { id: 'other-co', name: 'Other' })
    await env.admin('POST', '/tenants/other-co/agents', { agent_id: 'secret-bot', scopes: [], capabilities: ['crm.read'], max_ttl_seconds: 300 })
    const tok = (await env.admin('POST', '/admin-tokens', { tenant: env.tenant, role: 'admin', name: 'tenant-console' })) as { token: string }
    const s = await login(tok.token)
    const h = { cookie: s.cookie }
    assert.equal((await call('GET', `/admin/v1/tenants/${env.tenant}/agents`, h)).status, 200)
    for (const path of [
      '/admin/v1/tenants/other-co/agents',
      '/admin/v1/tenants/other-co/policies',
      '/admin/v1/audit?tenant=other-co',
      '/admin/v1/approvals?tenant=other-co',
      '/admin/v1/keys',
    ]) {
      const res = await call('GET', path, h)
      assert.equal(res.status, 403, path)
      assert.ok(!(await res.text()).includes('secret-bot'))
    }
    const tenants = (await (await call('GET', '/admin/v1/tenants', h)).json()) as { tenants: Array<{ id: string }> }
    assert.deepEqual(
      tenants.tenants.map((t) => t.id),
      [env.tenant],
    )
    const audit = (await (await call('GET', '/admin/v1/audit?limit=1000', h)).json()) as { events: Array<{ tenant: string | null }> }
    assert.ok(audit.events.every((e) => e.tenant === env.tenant))
    assert.equal((await call('POST', '/admin/v1/audit/verify', { ...h, 'x-aegis-csrf': s.csrf })).status, 403)
    assert.equal(
      (
        await call(
          'POST',
          '/admin/v1/tenants/other-co/agents',
          { ...h, 'x-aegis-csrf': s.csrf },
          { agent_id: 'x', scopes: [], capabilities: [], max_ttl_seconds: 60 },
        )
      ).status,
      403,
    )
  })

  test("a session ends at its expiry; a cookie MAC'd under another KEK is refused", async () => {
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

describe('console logout and admin-token revocation across control planes sharing PostgreSQL', { skip: await skipWithoutPostgres() }, () => {
  test('a session logged out on one control plane is refused on the other; deleting its admin token ends its sessions on both', async () => {
    const schema = await freshPostgresSchema()
    // One deployment: the same KEK and seeded tokens (a different AEGIS_ADMIN_TOKEN would revoke the first one's).
    const shared = { kek: Buffer.alloc(32, 5).toString('hex'), adminToken: `adm_${'x'.repeat(40)}`, gatewayToken: `gw_${'y'.repeat(40)}` }
    const one = await startControlPlane({ databaseUrl: schema.url, overrides: shared })
    const two = await startControlPlane({ databaseUrl: schema.url, overrides: shared })
    try {
      const login = async (url: string, token: string) => {
        const res = await fetch(`${url}/console/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) })
        assert.equal(res.status, 200)
        return { cookie: res.headers.get('set-cookie')!.split(';')[0]!, csrf: ((await res.json()) as { csrf: string }).csrf }
      }
      const get = async (url: string, cookie: string, path = '/admin/v1/kpis') => (await fetch(`${url}${path}`, { headers: { cookie } })).status

      const a = await login(one.url, one.adminToken)
      const b = await login(one.url, one.adminToken)
      assert.equal(await get(two.url, a.cookie), 200, 'sessions are shared')
      const out = await fetch(`${two.url}/console/logout`, { method: 'POST', headers: { cookie: a.cookie, 'x-aegis-csrf': a.csrf } })
      assert.equal(out.status, 204)
      for (const url of [one.url, two.url]) {
        assert.equal(await get(url, a.cookie), 401, `${url}: logged out`)
        assert.equal(await get(url, a.cookie, '/console/session'), 401, `${url}: logged out`)
        assert.equal(await get(url, b.cookie), 200, `${url}: the other session lives`)
      }

      const created = await fetch(`${one.url}/admin/v1/admin-tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${one.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tenant: null, role: 'admin', name: 'shared-console' }),
      })
      const tok = (await created.json()) as { id: string; token: string }
      const s1 = await login(one.url, tok.token)
      const s2 = await login(two.url, tok.token)
      assert.equal(await get(two.url, s1.cookie), 200)
      assert.equal(
        (await fetch(`${two.url}/admin/v1/admin-tokens/${tok.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${two.adminToken}` } })).status,
        204,
      )
      for (const url of [one.url, two.url]) {
        for (const s of [s1, s2]) {
          assert.equal(await get(url, s.cookie), 401, `${url}: token deleted`)
          assert.equal(await get(url, s.cookie, '/console/session'), 401, `${url}: token deleted`)
        }
      }
      assert.equal(await get(one.url, b.cookie), 200, 'sessions of other tokens live on')
    } finally {
      await one.close()
      await two.close()
      await schema.drop()
    }
  })
})
