// Aegis admin console: plain ES module, no framework. Every call goes to the
// admin API with the session cookie and, on state changes, the CSRF header.
// Data is only ever inserted as text (textContent), never as HTML.
import { drawChart } from './charts.js'

const $ = (id) => document.getElementById(id)
const state = {
  session: null,
  tenant: null,
  view: 'kpis',
  param: null,
  auditCursor: null,
  pollTimer: null,
  decisions: { rows: [], cursor: null, seq: 0, tailTimer: null },
}
const POLL_MS = 2000
const TAIL_MS = 2000

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v)
    else if (k === 'class') e.className = v
    else e.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c === undefined || c === null ? '' : String(c)))
  return e
}

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error_description ?? body?.error ?? `HTTP ${status}`)
    this.status = status
    this.code = body?.error
  }
}

async function api(method, path, body) {
  const headers = { accept: 'application/json' }
  if (method !== 'GET' && state.session) headers['x-aegis-csrf'] = state.session.csrf
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await res.text()
  let data = null
  try {
    data = text ? JSON.parse(text) : null
  } catch {
    data = null
  }
  if (res.status === 401 && path !== '/console/session') {
    showLogin()
    throw new ApiError(401, data)
  }
  if (!res.ok) throw new ApiError(res.status, data)
  return data
}

function flash(message, isError = false) {
  const f = $('flash')
  f.textContent = message
  f.className = isError ? 'flash error' : 'flash'
  f.hidden = false
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return '–'
  return ms < 1 ? `${Math.round(ms * 1000)} µs` : ms < 100 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`
}

/** A datetime-local field's value as an RFC 3339 time, or null when empty. */
function localToIso(v) {
  if (!v) return null
  const d = new Date(v)
  return Number.isNaN(d.getTime()) ? null : d.toISOString()
}

function time(v, unit = 's') {
  if (v === null || v === undefined) return '–'
  const d = new Date(unit === 's' ? v * 1000 : v)
  return d
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z')
}

const enc = encodeURIComponent
const tenantPath = (rest) => `/admin/v1/tenants/${enc(state.tenant)}${rest}`

function needTenant(body, cols) {
  if (state.tenant) return false
  body.replaceChildren(h('tr', {}, h('td', { colspan: cols }, 'Create a tenant first (POST /admin/v1/tenants).')))
  return true
}

// ---- login / session -------------------------------------------------------

function showLogin() {
  state.session = null
  clearInterval(state.pollTimer)
  $('nav').hidden = true
  $('session-box').hidden = true
  for (const v of document.querySelectorAll('.view')) v.hidden = true
  $('login').hidden = false
  $('login-error').hidden = !location.search.includes('login=failed')
  $('token').focus()
}

async function start() {
  let s
  try {
    s = await api('GET', '/console/session')
  } catch {
    showLogin()
    return
  }
  state.session = s
  if (location.search) history.replaceState(null, '', location.pathname + location.hash)
  $('login').hidden = true
  $('nav').hidden = false
  $('session-box').hidden = false
  $('who').textContent = `${s.name} · ${s.role}${s.tenant ? ` · tenant ${s.tenant}` : ' · global'}`
  const sel = $('tenant')
  // Locked before the tenant list loads, so a tenant admin never sees a choice it cannot make.
  sel.disabled = s.tenant !== null
  // Approver tokens may read only approvals: no tenant list for them.
  const tenants = s.role === 'admin' ? (await api('GET', '/admin/v1/tenants')).tenants : []
  sel.replaceChildren(...tenants.map((t) => h('option', { value: t.id }, t.name && t.name !== t.id ? `${t.id} (${t.name})` : t.id)))
  state.tenant = s.tenant ?? tenants[0]?.id ?? null
  if (state.tenant) sel.value = state.tenant
  if (s.role !== 'admin') {
    for (const a of document.querySelectorAll('#nav a')) a.hidden = a.getAttribute('href') !== '#approvals'
    if (location.hash !== '#approvals') location.hash = '#approvals'
  }
  route()
  poll()
  state.pollTimer = setInterval(poll, POLL_MS)
}

$('logout').addEventListener('click', async () => {
  try {
    await api('POST', '/console/logout')
  } catch {
    /* the cookie is cleared either way */
  }
  showLogin()
})
$('tenant').addEventListener('change', () => {
  state.tenant = $('tenant').value
  refreshView()
})

// ---- routing ---------------------------------------------------------------

const VIEWS = ['kpis', 'decisions', 'agents', 'agent', 'approvals', 'revocations', 'keys', 'policies', 'audit']

// `#agent/<agent id>` opens one agent's page; every other view is `#<view>`.
function route() {
  const [v, ...rest] = location.hash.slice(1).split('/')
  state.view = VIEWS.includes(v) && (v !== 'agent' || rest.length > 0) ? v : 'kpis'
  state.param = state.view === 'agent' ? decodeURIComponent(rest.join('/')) : null
  for (const sec of document.querySelectorAll('.view')) sec.hidden = sec.dataset.view !== state.view
  const navView = state.view === 'agent' ? 'agents' : state.view
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === `#${navView}`) a.setAttribute('aria-current', 'page')
    else a.removeAttribute('aria-current')
  }
  if (state.view !== 'decisions') setTail(false)
  $('flash').hidden = true
  refreshView()
}
window.addEventListener('hashchange', () => {
  if (state.session) route()
})

function refreshView() {
  const f = {
    kpis: loadKpis,
    decisions: () => loadDecisions(false),
    agents: loadAgents,
    agent: loadAgent,
    approvals: loadApprovals,
    revocations: loadRevocations,
    keys: loadKeys,
    policies: loadPolicies,
    audit: () => loadAudit(false),
  }[state.view]
  f().catch((err) => flash(err.message, true))
}

// Live parts refresh on the poll: the KPIs always, the approvals queue when shown.
async function poll() {
  if (!state.session) return
  try {
    if (state.view === 'kpis' && state.session.role === 'admin') await loadKpis()
    if (state.view === 'approvals') await loadApprovals()
    if (state.view === 'agent') await loadAgent()
    await loadPendingCount()
  } catch {
    /* the next poll retries */
  }
}

// ---- KPIs ------------------------------------------------------------------

function sum(o) {
  return Object.values(o ?? {}).reduce((a, b) => a + b, 0)
}

function countRows(tbody, obj) {
  const entries = Object.entries(obj ?? {}).sort((a, b) => b[1] - a[1])
  tbody.replaceChildren(
    ...(entries.length
      ? entries.map(([k, n]) => h('tr', { 'data-kind': k }, h('td', {}, k), h('td', { class: 'num' }, n)))
      : [h('tr', {}, h('td', { colspan: 2, class: 'muted' }, 'none yet'))]),
  )
}

async function loadKpis() {
  const k = await api('GET', '/admin/v1/kpis?history=1')
  $('kpi-tps').textContent = k.issuance_tps.toFixed(2)
  // The rate's window comes from the server, so the tile says what it measures.
  if (k.issuance_tps_window_seconds) $('kpi-tps-window').textContent = `last ${k.issuance_tps_window_seconds} s`
  $('kpi-approvals-open').textContent = String(k.approvals_open ?? '–')
  $('kpi-lifetime').textContent = `${Math.round(k.avg_token_lifetime_seconds)} s`
  $('kpi-issued').textContent = String(k.tokens_issued ?? 0)
  $('kpi-revocations').textContent = String(k.revocations)
  $('kpi-replays').textContent = String(k.replay_attempts)
  $('kpi-would-deny').textContent = String(sum(k.would_deny))
  $('kpi-updated').textContent = `updated ${new Date().toLocaleTimeString()}`
  countRows($('kpi-decisions'), k.decisions)
  countRows($('kpi-would-deny-table'), k.would_deny)
  const hist = k.history
  if (hist) {
    // The server keeps 10-second buckets; an hour reads better per minute.
    const per = Math.max(1, Math.round(60 / hist.bucket_seconds))
    const m = (values) => {
      const out = []
      for (let i = values.length % per; i < values.length; i += per) out.push(values.slice(i, i + per).reduce((a, b) => a + b, 0))
      return out
    }
    drawChart($('chart-issued'), [{ name: 'issued', values: m(hist.issued) }])
    const kinds = Object.entries(hist.decisions)
    drawChart(
      $('chart-decisions'),
      kinds.length ? kinds.map(([name, values]) => ({ name, values: m(values) })) : [{ name: 'none yet', values: m(hist.issued).map(() => 0) }],
    )
    drawChart($('chart-security'), [
      { name: 'revocations', values: m(hist.revocations) },
      { name: 'replays', values: m(hist.replay_attempts) },
    ])
    drawChart($('chart-would-deny'), [{ name: 'would deny', values: m(hist.would_deny) }])
  }
}

// ---- agents ----------------------------------------------------------------

async function loadAgents() {
  const body = $('agents-body')
  if (needTenant(body, 6)) return
  const { agents } = await api('GET', tenantPath('/agents'))
  body.replaceChildren(
    ...agents.map((a) =>
      h(
        'tr',
        { 'data-agent': a.agent_id },
        h('td', {}, h('a', { href: `#agent/${enc(a.agent_id)}` }, a.agent_id)),
        h('td', {}, h('code', {}, a.client_id)),
        h('td', {}, a.scopes.join(' ')),
        h('td', {}, a.capabilities.join(' ')),
        h('td', { class: 'num' }, a.max_ttl_seconds),
        h(
          'td',
          { class: 'actions' },
          h('button', { type: 'button', onclick: () => issueCredential(a.agent_id) }, 'Issue bootstrap credential'),
          h('button', { type: 'button', class: 'danger', onclick: () => revokeAgent(a.agent_id) }, 'Revoke'),
        ),
      ),
    ),
  )
  if (!agents.length) body.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No agents in this tenant.')))
}

async function issueCredential(agentId) {
  const c = await api('POST', tenantPath(`/agents/${enc(agentId)}/bootstrap-credentials`), { ttl_seconds: 300, single_use: true })
  const box = $('credential')
  box.replaceChildren(
    h('strong', {}, `Bootstrap credential for ${agentId} — shown once, copy it now:`),
    h(
      'dl',
      {},
      h('dt', {}, 'client_id'),
      h('dd', {}, h('code', { id: 'cred-client-id' }, c.client_id)),
      h('dt', {}, 'client_secret'),
      h('dd', {}, h('code', { id: 'cred-secret' }, c.client_secret)),
      h('dt', {}, 'expires'),
      h('dd', {}, time(c.expires_at)),
    ),
    h(
      'button',
      {
        type: 'button',
        onclick: () => {
          box.hidden = true
          box.replaceChildren()
        },
      },
      'Done, hide it',
    ),
  )
  box.hidden = false
  box.querySelector('button').focus()
}

async function revokeAgent(agentId) {
  await api('POST', '/admin/v1/revocations', { type: 'agent', value: agentId, tenant: state.tenant, reason: 'revoked from the console' })
  flash(`Agent ${agentId} revoked: its tokens are refused from now on.`)
}

$('agent-form').addEventListener('submit', async (ev) => {
  ev.preventDefault()
  const f = new FormData(ev.target)
  const words = (s) =>
    String(s ?? '')
      .split(/[\s,]+/)
      .filter(Boolean)
  try {
    await api('POST', tenantPath('/agents'), {
      agent_id: f.get('agent_id'),
      scopes: words(f.get('scopes')),
      capabilities: words(f.get('capabilities')),
      max_ttl_seconds: Number(f.get('max_ttl_seconds')),
    })
    ev.target.reset()
    flash('Agent registered.')
    await loadAgents()
  } catch (err) {
    flash(err.message, true)
  }
})

// ---- approvals -------------------------------------------------------------

async function loadPendingCount() {
  const q = state.session.tenant ? '' : state.tenant ? `&tenant=${enc(state.tenant)}` : ''
  const { approvals } = await api('GET', `/admin/v1/approvals?status=pending${q}`)
  const b = $('pending-count')
  b.textContent = String(approvals.length)
  b.hidden = approvals.length === 0
}

async function loadApprovals() {
  const body = $('approvals-body')
  const status = $('approval-status').value
  const params = new URLSearchParams()
  if (status) params.set('status', status)
  if (state.tenant) params.set('tenant', state.tenant)
  const { approvals } = await api('GET', `/admin/v1/approvals?${params}`)
  // Keep what the admin is typing: rebuild only when the set of rows changed.
  const sig = approvals.map((a) => a.id + a.status).join()
  if (body.dataset.sig === sig) return
  body.dataset.sig = sig
  body.replaceChildren(
    ...approvals.map((a) => {
      const reasonId = `reason-${a.id}`
      const decide =
        a.status === 'pending'
          ? h(
              'td',
              { class: 'actions' },
              h('label', { for: reasonId, class: 'sr-only' }, `Reason for ${a.tool}`),
              h('input', { id: reasonId, placeholder: 'reason', maxlength: 500 }),
              h('button', { type: 'button', onclick: () => decideApproval(a.id, 'approve', $(reasonId).value) }, 'Approve'),
              h('button', { type: 'button', class: 'danger', onclick: () => decideApproval(a.id, 'deny', $(reasonId).value) }, 'Deny'),
            )
          : h('td', {}, a.reason ?? '')
      return h(
        'tr',
        { 'data-approval': a.id },
        h('td', {}, time(a.created_at)),
        h('td', {}, state.session.role === 'admin' ? h('a', { href: `#agent/${enc(a.agent_id)}` }, `${a.tenant}/${a.agent_id}`) : `${a.tenant}/${a.agent_id}`),
        // The request's own page: what notifications link to and MCP clients open.
        h('td', {}, h('a', { href: `/console/approvals/${enc(a.id)}`, title: `Approval request ${a.id}` }, a.tool)),
        h('td', {}, h('code', { class: 'data' }, JSON.stringify(a.params))),
        h('td', { class: 'resource' }, a.resource ?? h('span', { class: 'muted' }, 'none')),
        h(
          'td',
          { class: 'policy' },
          h('code', {}, a.policy_id || '–'),
          h('span', { class: 'muted' }, ` @ ${a.policy_version}`),
          a.policy_reason ? h('div', { class: 'why' }, a.policy_reason) : '',
        ),
        h('td', {}, a.group, a.require_console ? h('div', { class: 'muted' }, 'console only') : ''),
        h('td', {}, a.status === 'pending' ? expiresIn(a.expires_at) : time(a.expires_at)),
        h('td', {}, a.status),
        decide,
      )
    }),
  )
  if (!approvals.length) body.append(h('tr', {}, h('td', { colspan: 10, class: 'muted' }, 'Nothing here.')))
}

/** "14:05:09Z (in 4 min)" for an epoch-seconds expiry. */
function expiresIn(sec) {
  const left = Math.round(sec - Date.now() / 1000)
  const rel = left <= 0 ? 'expired' : left < 90 ? `in ${left} s` : left < 5400 ? `in ${Math.round(left / 60)} min` : `in ${Math.round(left / 3600)} h`
  return h('span', { title: time(sec) }, `${time(sec).slice(11)} (${rel})`)
}

async function decideApproval(id, action, reason) {
  try {
    await api('POST', `/admin/v1/approvals/${enc(id)}/${action}`, reason ? { reason } : {})
    flash(action === 'approve' ? 'Approved.' : 'Denied.')
    await loadApprovals()
  } catch (err) {
    flash(err.message, true)
  }
}
$('approval-status').addEventListener('change', () => loadApprovals().catch((e) => flash(e.message, true)))

// ---- revocations -----------------------------------------------------------

/** Every revocation in force that `filter` (query parameters) selects: the list is paged (next_cursor), and the newest entries are on the last page. */
async function revocationsInForce(filter = '') {
  const all = []
  let cursor = null
  do {
    const page = await api('GET', `/admin/v1/revocations?limit=1000${filter}${cursor === null ? '' : `&cursor=${enc(cursor)}`}`)
    all.push(...page.revocations)
    cursor = page.next_cursor
  } while (cursor !== null)
  return all
}

async function loadRevocations() {
  const revocations = await revocationsInForce()
  const rows = revocations.filter((r) => !state.tenant || r.tenant === null || r.tenant === state.tenant || state.session.tenant === null)
  // Agent, client and tenant entries hold until lifted (expires_at null); the others end by themselves.
  const liftable = (r) => ['agent', 'client', 'tenant'].includes(r.type) && (r.type !== 'tenant' || state.session.tenant === null)
  $('revocations-body').replaceChildren(
    ...rows.map((r) =>
      h(
        'tr',
        { 'data-revocation': r.seq },
        h('td', { class: 'num' }, r.seq),
        h('td', {}, r.type),
        h('td', {}, h('code', {}, r.value)),
        h('td', {}, r.tenant ?? 'all'),
        h('td', {}, r.reason ?? ''),
        h('td', {}, time(r.created_at)),
        h('td', {}, r.expires_at === null ? 'until lifted' : time(r.expires_at)),
        h('td', { class: 'actions' }, liftable(r) ? h('button', { type: 'button', class: 'danger', onclick: () => liftRevocation(r) }, 'Lift') : ''),
      ),
    ),
  )
  if (!rows.length) $('revocations-body').append(h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No active revocations.')))
}

async function liftRevocation(r) {
  if (!window.confirm(`Lift the ${r.type} revocation of ${r.value}? New tokens can be issued for it again; tokens minted before stay refused.`)) return
  try {
    await api('DELETE', `/admin/v1/revocations/${enc(String(r.seq))}`)
    flash(`Revocation ${r.seq} lifted: ${r.type} ${r.value} can get new tokens again.`)
    await loadRevocations()
  } catch (err) {
    flash(err.message, true)
  }
}

$('revocation-form').addEventListener('submit', async (ev) => {
  ev.preventDefault()
  const f = new FormData(ev.target)
  const type = f.get('type')
  const body = { type, value: f.get('value') }
  if (type !== 'kid' && state.tenant) body.tenant = state.tenant
  if (type === 'tenant') body.tenant = f.get('value')
  if (f.get('reason')) body.reason = f.get('reason')
  try {
    await api('POST', '/admin/v1/revocations', body)
    ev.target.reset()
    flash('Revocation recorded.')
    await loadRevocations()
  } catch (err) {
    flash(err.message, true)
  }
})

// ---- keys ------------------------------------------------------------------

async function loadKeys() {
  const body = $('keys-body')
  let res
  try {
    res = await api('GET', '/admin/v1/keys')
  } catch (err) {
    if (err.status === 403) {
      body.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'Signing keys are managed by global admins.')))
      $('rotate').hidden = true
      return
    }
    throw err
  }
  const ks = state.session.keys
  const current = res.keys.find((k) => k.kid === res.current)
  const next = current ? current.activates_at + ks.rotation_interval_seconds : null
  $('keys-schedule').textContent =
    `Keys rotate every ${Math.round((ks.rotation_interval_seconds / 3600) * 10) / 10} h; the next key is ` +
    `published ${Math.round(ks.pre_publish_seconds / 60)} min before it signs.` +
    (next ? ` Next scheduled rotation: ${time(next)}.` : '')
  body.replaceChildren(
    ...res.keys.map((k) =>
      h(
        'tr',
        { 'data-kid': k.kid },
        h('td', {}, h('code', {}, k.kid)),
        h('td', {}, k.revoked ? `${k.state} (revoked)` : k.kid === res.current ? `${k.state} (signing)` : k.state),
        h('td', {}, time(k.created_at)),
        h('td', {}, time(k.activates_at)),
        h('td', {}, time(k.deactivated_at)),
        h('td', {}, time(k.retires_at)),
      ),
    ),
  )
}

$('rotate').addEventListener('click', async () => {
  try {
    await api('POST', '/admin/v1/keys/rotate')
    flash('Rotation started.')
    await loadKeys()
  } catch (err) {
    flash(err.message, true)
  }
})

// ---- policies --------------------------------------------------------------

async function loadPolicies() {
  const body = $('policies-body')
  if (needTenant(body, 6)) return
  const { policies } = await api('GET', tenantPath('/policies'))
  $('policies-mode').textContent = state.session.gateway_shadow ? 'Gateways run in shadow mode: nothing is enforced.' : ''
  body.replaceChildren(
    ...policies.map((p) =>
      h(
        'tr',
        { 'data-policy': p.id },
        h('td', {}, p.version),
        h('td', {}, p.mode),
        h('td', {}, p.status),
        h('td', {}, time(p.created_at)),
        h('td', {}, time(p.activated_at)),
        h('td', {}, p.status === 'active' ? '' : h('button', { type: 'button', onclick: () => activatePolicy(p.id) }, 'Activate')),
      ),
    ),
  )
  if (!policies.length) body.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No bundles: the default policy applies.')))
}

async function activatePolicy(id) {
  try {
    await api('POST', tenantPath(`/policies/${enc(id)}/activate`))
    flash('Bundle activated.')
    await loadPolicies()
  } catch (err) {
    flash(err.message, true)
  }
}

// ---- decisions -------------------------------------------------------------

const DECISION_CLASS = { allow: 'ok', sanitize: 'ok', deny: 'bad', approval_needed: 'wait', refused: 'bad', replayed: 'bad', unavailable: 'warn' }

function decisionBadge(d) {
  const wrap = h('span', { class: 'decision' }, h('span', { class: `pill ${DECISION_CLASS[d.decision] ?? ''}` }, d.decision))
  // Shadow decisions were not enforced: say so next to what the policy would have done.
  if (d.enforced === false) wrap.append(h('span', { class: 'pill shadow', title: 'shadow mode: not enforced' }, 'shadow'))
  return wrap
}

function reasonsCell(d) {
  const lines = [...(d.reasons ?? [])]
  if (d.error) lines.push(d.error)
  if (d.degraded) lines.push(`degraded: ${d.degraded}`)
  if (!lines.length) return h('td', { class: 'muted' }, '–')
  return h('td', { class: 'reasons' }, ...lines.map((l) => h('div', {}, l)))
}

function decisionRow(d) {
  return h(
    'tr',
    { 'data-decision-id': d.id, 'data-decision': d.decision },
    h('td', { class: 'nowrap' }, time(d.ts_ms, 'ms')),
    h('td', {}, d.agent_id ? h('a', { href: `#agent/${enc(d.agent_id)}` }, d.agent_id) : h('span', { class: 'muted' }, 'unknown')),
    h('td', {}, d.tool ?? '–', d.resource ? h('div', { class: 'muted' }, d.resource) : ''),
    h('td', {}, decisionBadge(d)),
    reasonsCell(d),
    h('td', {}, d.params ? h('code', { class: 'data' }, JSON.stringify(d.params)) : h('span', { class: 'muted' }, '–')),
    h('td', {}, d.policy_version ?? '–', d.policy_ids?.length ? h('div', { class: 'muted' }, d.policy_ids.join(', ')) : ''),
    h('td', {}, d.gateway_id ?? '–', h('div', { class: 'muted' }, d.mode)),
    h('td', { class: 'num' }, fmtMs(d.latency_ms)),
  )
}

function decisionsQuery() {
  const f = new FormData($('decisions-form'))
  const p = new URLSearchParams()
  for (const k of ['agent_id', 'tool', 'decision', 'enforced']) if (f.get(k)) p.set(k, String(f.get(k)).trim())
  const since = localToIso(f.get('since'))
  const until = localToIso(f.get('until'))
  if (since) p.set('since', since)
  if (until) p.set('until', until)
  if (state.tenant && state.session.tenant === null) p.set('tenant', state.tenant)
  p.set('limit', '100')
  return p
}

const newestFirst = (a, b) => b.ts_ms - a.ts_ms || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)

function renderDecisions(fresh = new Set()) {
  const d = state.decisions
  const body = $('decisions-body')
  body.replaceChildren(
    ...d.rows.map((r) => {
      const tr = decisionRow(r)
      if (fresh.has(r.id)) tr.classList.add('fresh')
      return tr
    }),
  )
  if (!d.rows.length) body.append(h('tr', {}, h('td', { colspan: 9, class: 'muted' }, 'No decisions match.')))
  $('decisions-more').hidden = d.cursor === null
}

async function loadDecisions(more) {
  const d = state.decisions
  const p = decisionsQuery()
  if (more && d.cursor) p.set('cursor', d.cursor)
  const seq = (d.seq = d.seq + 1)
  const res = await api('GET', `/admin/v1/decisions?${p}`)
  if (seq !== d.seq) return
  d.rows = more ? [...d.rows, ...res.decisions] : res.decisions
  d.cursor = res.next_cursor
  renderDecisions()
  $('decisions-status').textContent = d.tailTimer ? 'live' : ''
}

// The tail re-reads the newest page with the same filters and adds what it has
// not shown: records reach the control plane in batches, so one from a slower
// gateway can be older than the newest shown and still be new to the page.
async function tailDecisions() {
  const d = state.decisions
  if (state.view !== 'decisions' || d.busy) return
  d.busy = true
  try {
    const seq = d.seq
    const res = await api('GET', `/admin/v1/decisions?${decisionsQuery()}`)
    if (seq !== d.seq) return
    const seen = new Set(d.rows.map((r) => r.id))
    const added = res.decisions.filter((r) => !seen.has(r.id))
    if (added.length) {
      d.rows = [...added, ...d.rows].sort(newestFirst)
      renderDecisions(new Set(added.map((r) => r.id)))
    }
    $('decisions-status').textContent = `live · checked ${new Date().toLocaleTimeString()}${added.length ? ` · ${added.length} new` : ''}`
  } catch {
    /* the next tick retries */
  } finally {
    d.busy = false
  }
}

function setTail(on) {
  const d = state.decisions
  clearInterval(d.tailTimer)
  d.tailTimer = null
  $('decisions-tail').checked = on
  if (on) {
    d.tailTimer = setInterval(tailDecisions, TAIL_MS)
    $('decisions-status').textContent = 'live'
    void tailDecisions()
  } else $('decisions-status').textContent = ''
}

$('decisions-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  loadDecisions(false).catch((e) => flash(e.message, true))
})
$('decisions-more').addEventListener('click', () => loadDecisions(true).catch((e) => flash(e.message, true)))
$('decisions-tail').addEventListener('change', (ev) => setTail(ev.target.checked))

// ---- one agent -------------------------------------------------------------

function emptyRow(body, cols, text) {
  if (!body.children.length) body.append(h('tr', {}, h('td', { colspan: cols, class: 'muted' }, text)))
}

async function loadAgent() {
  const agentId = state.param
  if (!agentId || !state.tenant) return
  const tenant = state.tenant
  const tq = state.session.tenant === null ? `&tenant=${enc(tenant)}` : ''
  const [agent, decisions, tokens, approvals, revocations] = await Promise.all([
    api('GET', tenantPath(`/agents/${enc(agentId)}`)),
    api('GET', `/admin/v1/decisions?agent_id=${enc(agentId)}&limit=15${tq}`).catch((err) => ({ error: err.message, decisions: [] })),
    api('GET', `/admin/v1/audit?type=token.issued&actor=${enc(`agent:${tenant}/${agentId}`)}&order=desc&limit=15${tq}`),
    api('GET', `/admin/v1/approvals?tenant=${enc(tenant)}&limit=500`),
    // Only the entries naming this agent: a page or two, however many jti entries are in force.
    revocationsInForce(`&tenant=${enc(tenant)}&agent_id=${enc(agentId)}`),
  ])
  if (state.view !== 'agent' || state.param !== agentId) return
  $('agent-name').textContent = `${tenant}/${agentId}`
  const mine = revocations
  const revoked = mine.some((r) => r.type === 'agent')
  $('agent-state').textContent = revoked ? 'revoked' : 'active'
  $('agent-state').className = `pill ${revoked ? 'bad' : 'ok'}`
  $('agent-revoke').disabled = revoked
  const facts = [
    ['Client id', h('code', {}, agent.client_id)],
    ['Scopes', agent.scopes.join(' ') || '–'],
    ['Capabilities', agent.capabilities.join(' ') || '–'],
    ['Max token lifetime', `${agent.max_ttl_seconds} s`],
    ['Client authentication', agent.token_endpoint_auth_method ?? '–'],
  ]
  $('agent-facts').replaceChildren(...facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))
  $('agent-decisions-link').setAttribute('href', '#decisions')
  $('agent-decisions-link').onclick = () => {
    $('decisions-form').elements.agent_id.value = agentId
  }

  const db = $('agent-decisions')
  db.replaceChildren(
    ...decisions.decisions.map((d) =>
      h(
        'tr',
        { 'data-decision-id': d.id },
        h('td', { class: 'nowrap' }, time(d.ts_ms, 'ms')),
        h('td', {}, d.tool ?? '–'),
        h('td', {}, decisionBadge(d)),
        reasonsCell(d),
      ),
    ),
  )
  emptyRow(db, 4, decisions.error ? `Decision log unavailable: ${decisions.error}` : 'No decisions recorded yet.')

  const tb = $('agent-tokens')
  tb.replaceChildren(
    ...tokens.events.map((e) =>
      h(
        'tr',
        { 'data-jti': e.data.jti ?? e.subject },
        h('td', { class: 'nowrap' }, time(e.ts_ms, 'ms')),
        h(
          'td',
          {},
          h('code', { class: 'id' }, e.data.jti ?? e.subject ?? ''),
          h('div', { class: 'muted' }, [e.data.grant_type, e.data.scope].filter(Boolean).join(' · ')),
        ),
        h('td', { class: 'nowrap' }, e.data.exp ? time(e.data.exp).slice(11) : '–'),
      ),
    ),
  )
  emptyRow(tb, 3, 'No tokens issued.')

  const ab = $('agent-approvals')
  ab.replaceChildren(
    ...approvals.approvals
      .filter((a) => a.agent_id === agentId)
      .slice(0, 15)
      .map((a) =>
        h(
          'tr',
          { 'data-approval': a.id },
          h('td', { class: 'nowrap' }, time(a.created_at)),
          h('td', {}, a.tool),
          h('td', { class: 'policy' }, h('code', {}, a.policy_id || '–'), a.policy_reason ? h('div', { class: 'why' }, a.policy_reason) : ''),
          h('td', {}, a.status),
          h('td', {}, a.status === 'pending' ? expiresIn(a.expires_at) : time(a.expires_at)),
        ),
      ),
  )
  emptyRow(ab, 5, 'No approval requests.')

  const rb = $('agent-revocations')
  rb.replaceChildren(
    ...mine.map((r) =>
      h(
        'tr',
        { 'data-revocation': r.seq },
        h('td', { class: 'num' }, r.seq),
        h('td', {}, r.type),
        h('td', {}, h('code', {}, r.value)),
        h('td', {}, r.reason ?? ''),
        h('td', { class: 'nowrap' }, time(r.created_at)),
      ),
    ),
  )
  emptyRow(rb, 5, 'None: the agent can get tokens.')
}

$('agent-revoke').addEventListener('click', async () => {
  const agentId = state.param
  if (!window.confirm(`Revoke agent ${agentId}? Its tokens are refused from now on and it gets no new ones until the revocation is lifted.`)) return
  try {
    const reason = $('agent-revoke-reason').value.trim()
    await api('POST', '/admin/v1/revocations', { type: 'agent', value: agentId, tenant: state.tenant, reason: reason || 'revoked from the console' })
    $('agent-revoke-reason').value = ''
    flash(`Agent ${agentId} revoked: its tokens are refused from now on.`)
    await loadAgent()
  } catch (err) {
    flash(err.message, true)
  }
})

// ---- audit -----------------------------------------------------------------

function auditQuery() {
  const f = new FormData($('audit-form'))
  const p = new URLSearchParams()
  if (f.get('type')) p.set('type', f.get('type'))
  if (f.get('since')) p.set('since', new Date(f.get('since')).toISOString())
  if (f.get('actor')) p.set('actor', f.get('actor'))
  // Newest first: the log opens on what just happened; "Older events" pages back.
  p.set('order', 'desc')
  p.set('limit', f.get('limit') || '100')
  if (state.tenant && state.session.tenant === null && $('audit-form').dataset.all !== '1') p.set('tenant', state.tenant)
  return p
}

async function loadAudit(more) {
  const p = auditQuery()
  if (more && state.auditCursor) p.set('cursor', state.auditCursor)
  // A slower earlier answer (the unfiltered first load) must not overwrite a newer filter's rows.
  const seq = (state.auditSeq = (state.auditSeq ?? 0) + 1)
  const { events, next_cursor } = await api('GET', `/admin/v1/audit?${p}`)
  if (seq !== state.auditSeq) return
  const rows = events.map((e) =>
    h(
      'tr',
      {},
      h('td', { class: 'num' }, e.id),
      h('td', {}, time(e.ts_ms, 'ms')),
      h('td', {}, e.type),
      h('td', {}, e.tenant ?? ''),
      h('td', {}, e.actor ?? ''),
      h('td', {}, e.subject ?? ''),
      h('td', {}, h('code', { class: 'data' }, JSON.stringify(e.data))),
    ),
  )
  if (more) $('audit-body').append(...rows)
  else $('audit-body').replaceChildren(...rows)
  state.auditCursor = next_cursor
  $('audit-more').hidden = next_cursor === null
}

$('audit-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  loadAudit(false).catch((e) => flash(e.message, true))
})
$('audit-more').addEventListener('click', () => loadAudit(true).catch((e) => flash(e.message, true)))
$('audit-verify').addEventListener('click', async () => {
  const out = $('audit-verify-result')
  out.textContent = 'Verifying…'
  try {
    const r = await api('POST', '/admin/v1/audit/verify')
    out.className = r.ok ? 'ok' : 'error'
    out.textContent = r.ok
      ? `Chain verified: ${r.events} events in ${r.chains.length} chain(s), ${r.checkpoints} signed checkpoints, all whole.`
      : `Chain BROKEN: first bad event ${r.first_bad.id ?? '(missing)'} in chain ${r.first_bad.chain_id} at ` +
        `position ${r.first_bad.chain_seq}: ${r.first_bad.reason}`
  } catch (err) {
    out.className = 'error'
    out.textContent = err.status === 403 ? 'Only a global admin can verify the audit chains.' : err.message
  }
})

start()
