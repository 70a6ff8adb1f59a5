/**
 * The call that runs is exactly the call that was decided: the reverse
 * proxy decides on what it forwards (content types, query, resource, path),
 * and an approval lifts the approval and nothing else (sanitize obligations
 * stay, `context.override` is true only with a valid override).
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { activatePolicy, authorize, eventually, startGatewayEnv, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'
import { startUpstream, type Upstream } from '../../helpers/gateway-upstream.js'

const POLICY = `
@id("crm-list")
permit (principal, action == Action::"crm.list", resource)
when { context.params has limit && context.params.limit <= 100 }
unless { context has http && context.http.query has limit };

@id("crm-get-only")
permit (principal, action == Action::"crm.read", resource == Resource::"crm:/contacts")
when { context has http && context.http.method == "GET" };

@id("files-upload")
permit (principal, action == Action::"files.upload", resource)
when { context has http && context.http.body == "opaque" && context.http.path like "/inbox/*" };

@id("records-read")
@sanitize("redact:/params/ssn")
permit (principal, action == Action::"records.export", resource);

@id("records-approval")
@approval("privacy")
forbid (principal, action == Action::"records.export", resource)
when { context.params has count && context.params.count > 10 };

@id("records-override-seen")
@sanitize("redact:/params/reviewer_note")
permit (principal, action == Action::"records.export", resource)
when { context.override };
`

describe('enforcement integrity', () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let upstream: Upstream
  let token: string

  before(async () => {
    env = await startGatewayEnv({ overrides: { tokens: { overrideTtlSeconds: 60 } } })
    upstream = await startUpstream()
    const cred = await env.agent('integrity-bot', ['crm.list', 'crm.read', 'files.upload', 'records.export'])
    await activatePolicy(env, POLICY)
    gw = await env.startGateway({
      gateway: {
        routes: [
          { path: '/tools/crm', upstream: `${upstream.url}/api/crm`, mode: 'proxy', tool: 'crm.list' },
          { path: '/tools/contacts', upstream: `${upstream.url}/api/contacts`, mode: 'proxy', tool: 'crm.read', resource: 'crm:/contacts' },
          { path: '/tools/files', upstream: `${upstream.url}/api/files`, mode: 'proxy', tool: 'files.upload', opaque_body: true, resource: 'files:{path}' },
          { path: '/tools/records', upstream: `${upstream.url}/api/records`, mode: 'proxy', tool: 'records.export' },
        ],
      },
    })
    token = await env.token(cred)
    await eventually(async () => (await authorize(gw.url, token, { action: { tool: 'crm.list', params: { limit: 1 } } })).body.policy_version !== 'none')
  })
  after(async () => {
    await upstream?.close()
    await env?.close()
  })

  const rawPost = (path: string, body: string) =>
    new Promise<number>((resolve, reject) => {
      const { hostname, port } = new URL(gw.url)
      const req = httpRequest(
        { hostname, port, path, method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } },
        (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        },
      )
      req.on('error', reject)
      req.end(body)
    })

  const proxied = (path: string, init: RequestInit & { headers?: Record<string, string> } = {}) =>
    fetch(`${gw.url}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, ...init.headers } })

  test('a JSON body sent as application/vnd.api+json is decided, not forwarded unread', async () => {
    const before = upstream.seen.length
    const refused = await proxied('/tools/crm/search', { method: 'POST', headers: { 'content-type': 'application/vnd.api+json' }, body: '{"limit":1000}' })
    assert.equal(refused.status, 403)
    assert.equal(upstream.seen.length, before)
    const allowed = await proxied('/tools/crm/search', {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.api+json; charset=utf-8' },
      body: '{"limit":10}',
    })
    assert.equal(allowed.status, 200)
    const seen = upstream.seen.at(-1)!
    assert.equal(seen.body, '{"limit":10}')
    assert.equal(seen.headers['content-type'], 'application/vnd.api+json')
  })

  test('a body the gateway cannot read is refused with 415 and never forwarded', async () => {
    const before = upstream.seen.length
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16']) {
      const res = await proxied('/tools/crm/search', { method: 'POST', headers: { 'content-type': type }, body: '{"limit":1000}' })
      assert.equal(res.status, 415, type)
      assert.equal(((await res.json()) as { error: string }).error, 'unsupported_media_type')
    }
    const encoded = await proxied('/tools/crm/search', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: '{"limit":10}',
    })
    assert.equal(encoded.status, 415)
    assert.equal(upstream.seen.length, before)
  })

  test('the query string is decided too: a JSON body within the limit plus ?limit=1000 is refused', async () => {
    const before = upstream.seen.length
    const res = await proxied('/tools/crm/search?limit=1000', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"limit":10}' })
    assert.equal(res.status, 403)
    assert.equal(upstream.seen.length, before)
  })

  test('what is forwarded is the canonical form of the decided path and query', async () => {
    const res = await proxied('/tools/crm/a%20b/%63?x=1+2&y=%41&x=3&&z', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{ "limit" : 5 }',
    })
    assert.equal(res.status, 200)
    const seen = upstream.seen.at(-1)!
    assert.equal(seen.url, '/api/crm/a%20b/c?x=1%202&x=3&y=A&z=')
    assert.equal(seen.body, '{"limit":5}')
  })

  test("the resource comes from the route, never from the caller's Aegis-Resource header", async () => {
    const ok = await proxied('/tools/contacts/7', { headers: { 'aegis-resource': 'crm:/admin' } })
    assert.equal(ok.status, 200)
    // The route's resource is what the policy permits; a header naming it on another route changes nothing.
    const before = upstream.seen.length
    const other = await proxied('/tools/crm/x', { headers: { 'aegis-resource': 'crm:/contacts', 'aegis-tool': 'crm.read' } })
    assert.equal(other.status, 403)
    assert.equal(upstream.seen.length, before)
  })

  test('the method is decided and cannot be overridden by a header', async () => {
    const before = upstream.seen.length
    const post = await proxied('/tools/contacts/7', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    assert.equal(post.status, 403)
    assert.equal(upstream.seen.length, before)
    const get = await proxied('/tools/contacts/7', { headers: { 'x-http-method-override': 'DELETE', 'x-original-url': '/api/admin' } })
    assert.equal(get.status, 200)
    const seen = upstream.seen.at(-1)!
    assert.equal(seen.method, 'GET')
    assert.equal(seen.headers['x-http-method-override'], undefined)
    assert.equal(seen.headers['x-original-url'], undefined)
  })

  test('opaque routes forward the bytes unread; the policy sees the path and the digest', async () => {
    const body = Buffer.from([0, 1, 2, 255, 10])
    const ok = await proxied('/tools/files/inbox/a.bin', { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body })
    assert.equal(ok.status, 200)
    const seen = upstream.seen.at(-1)!
    assert.equal(seen.url, '/api/files/inbox/a.bin')
    assert.equal(seen.headers['content-type'], 'application/octet-stream')
    const before = upstream.seen.length
    const outside = await proxied('/tools/files/outbox/a.bin', { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body })
    assert.equal(outside.status, 403)
    assert.equal(upstream.seen.length, before)
  })

  test('paths an upstream could read differently are refused', async () => {
    const before = upstream.seen.length
    for (const p of [
      '/tools/crm/a/../b',
      '/tools/crm/./b',
      '/tools/crm/%2e%2e/x',
      '/tools/crm/a%2fb',
      '/tools/crm/a%5cb',
      '/tools/crm//x',
      '/tools/cr%6d/x',
      '/tools/crm/%E0%A4%A',
      '/tools/crm/a%00b',
    ]) {
      // node:http sends the request-target as written (fetch would resolve the dot segments first).
      const status = await rawPost(p, '{"limit":1}')
      assert.ok(status === 400 || status === 404, `${p}: ${status}`)
    }
    assert.equal(upstream.seen.length, before)
  })

  test('a tool header that names another tool than the route is refused', async () => {
    const before = upstream.seen.length
    const res = await proxied('/tools/crm/x', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'aegis-tool': 'records.export' },
      body: '{"limit":1}',
    })
    assert.equal(res.status, 403)
    assert.match(((await res.json()) as { error_description: string }).error_description, /tool mismatch/)
    assert.equal(upstream.seen.length, before)
  })

  async function approve(approvalId: string, statusUrl: string): Promise<string> {
    await env.admin('POST', `/approvals/${approvalId}/approve`, { reason: 'reviewed' })
    const st = await fetch(statusUrl, { headers: { authorization: `Bearer ${token}` } })
    const body = (await st.json()) as { status: string; override_token?: string }
    assert.equal(body.status, 'approved')
    return body.override_token!
  }

  test('an approved call through /v1/authorize keeps its sanitize obligation, and context.override is true only with the override', async () => {
    const params = { count: 50, ssn: '078-05-1120', reviewer_note: 'internal' }
    const below = await authorize(gw.url, token, { action: { tool: 'records.export', params: { count: 5, ssn: '078-05-1120', reviewer_note: 'internal' } } })
    assert.equal(below.body.decision, 'sanitize')
    // Without an override, the override-only permit (and its redaction) does not apply.
    assert.deepEqual(below.body.params, { count: 5, ssn: '[REDACTED]', reviewer_note: 'internal' })
    const asked = await authorize(gw.url, token, { action: { tool: 'records.export', params } })
    assert.equal(asked.body.decision, 'approval_needed')
    const approval = asked.body.approval as { id: string; status_url: string }
    const listed = await env.admin('GET', `/approvals/${approval.id}`)
    // Approvers see what the approved call will redact masked, not in clear.
    assert.notEqual((listed.params as Record<string, unknown>).ssn, '078-05-1120')
    const override = await approve(approval.id, approval.status_url)
    const approved = await authorize(gw.url, token, { action: { tool: 'records.export', params } }, { 'aegis-override': override })
    assert.equal(approved.status, 200)
    assert.equal(approved.body.decision, 'sanitize')
    assert.deepEqual(approved.body.params, { count: 50, ssn: '[REDACTED]', reviewer_note: '[REDACTED]' })
    assert.ok((approved.body.reasons as string[]).some((r) => r.includes('approved by a human')))
  })

  test('an approved call through the proxy reaches the upstream redacted, and its override binds path and query', async () => {
    const body = JSON.stringify({ count: 50, ssn: '078-05-1120' })
    const send = (path: string, override?: string) =>
      proxied(path, { method: 'POST', headers: { 'content-type': 'application/json', ...(override ? { 'aegis-override': override } : {}) }, body })
    const asked = await send('/tools/records/export?format=csv')
    assert.equal(asked.status, 403)
    const refusal = (await asked.json()) as { decision: string; approval: { id: string; status_url: string } }
    assert.equal(refusal.decision, 'approval_needed')
    const listed = await env.admin('GET', `/approvals/${refusal.approval.id}`)
    assert.deepEqual(listed.request, { method: 'POST', path: '/export', query: { format: 'csv' } })
    const override = await approve(refusal.approval.id, refusal.approval.status_url)
    const before = upstream.seen.length
    // Same body, other query or other path: the override is not for that request.
    assert.equal((await send('/tools/records/export?format=json', override)).status, 401)
    assert.equal((await send('/tools/records/export2?format=csv', override)).status, 401)
    assert.equal(upstream.seen.length, before)
    const ok = await send('/tools/records/export?format=csv', override)
    assert.equal(ok.status, 200)
    const seen = upstream.seen.at(-1)!
    assert.equal(seen.url, '/api/records/export?format=csv')
    assert.deepEqual(JSON.parse(seen.body), { count: 50, ssn: '[REDACTED]' })
    assert.ok(!seen.body.includes('078-05-1120'))
  })
})
