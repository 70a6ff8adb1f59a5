// One approval request on a page of its own (/console/approvals/<id>): the
// URL an MCP client shows its user (URL-mode elicitation) and notifications
// link to. After login, one click approves or denies. Data is only ever
// inserted as text, never as HTML.
const $ = (id) => document.getElementById(id)
const id = decodeURIComponent(location.pathname.split('/').pop() ?? '')
let session = null

async function api(method, path, body) {
  const headers = { accept: 'application/json' }
  if (method !== 'GET' && session) headers['x-aegis-csrf'] = session.csrf
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await res.text()
  let data = null
  try {
    data = text ? JSON.parse(text) : null
  } catch {
    data = null
  }
  if (!res.ok) {
    const err = new Error(data?.error_description ?? data?.error ?? `HTTP ${res.status}`)
    err.status = res.status
    throw err
  }
  return data
}

function flash(message, isError = false) {
  const f = $('flash')
  f.textContent = message
  f.className = isError ? 'flash error' : 'flash'
  f.hidden = false
}

function time(sec) {
  return new Date(sec * 1000)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z')
}

function expiry(sec) {
  const left = Math.round(sec - Date.now() / 1000)
  const rel = left <= 0 ? 'expired' : left < 90 ? `in ${left} s` : left < 5400 ? `in ${Math.round(left / 60)} min` : `in ${Math.round(left / 3600)} h`
  return `${time(sec)} (${rel})`
}

const STATUS_CLASS = { pending: 'wait', approved: 'ok', denied: 'bad', expired: 'warn' }

function render(a) {
  $('request').hidden = false
  $('a-id').textContent = a.id
  $('a-tool').textContent = a.tool
  $('a-tool2').textContent = a.tool
  $('a-status').textContent = a.status
  $('a-status').className = `pill ${STATUS_CLASS[a.status] ?? ''}`
  $('a-agent').textContent = `${a.agent_id} (tenant ${a.tenant})`
  $('a-resource').textContent = a.resource ?? 'none'
  $('a-reason').textContent = a.policy_reason ?? 'the policy gives no reason'
  $('a-policy').textContent = a.policy_id || '–'
  $('a-version').textContent = `version ${a.policy_version}`
  $('a-group').textContent = a.require_console ? `${a.group} (console decision required)` : a.group
  $('a-expires').textContent = expiry(a.expires_at)
  $('a-decided').textContent = a.decided_at ? `${a.status} by ${a.decided_by} at ${time(a.decided_at)}${a.reason ? `: ${a.reason}` : ''}` : 'not yet'
  $('a-params').textContent = JSON.stringify(a.params, null, 2)
  $('decide').hidden = a.status !== 'pending'
}

async function load() {
  try {
    render(await api('GET', `/admin/v1/approvals/${encodeURIComponent(id)}`))
  } catch (err) {
    if (err.status === 401) return showLogin()
    flash(err.message, true)
  }
}

function showLogin() {
  session = null
  $('request').hidden = true
  $('session-box').hidden = true
  $('login').hidden = false
  $('token').focus()
}

async function start() {
  try {
    session = await api('GET', '/console/session')
  } catch {
    return showLogin()
  }
  $('login').hidden = true
  $('session-box').hidden = false
  $('who').textContent = `${session.name} · ${session.role}${session.tenant ? ` · tenant ${session.tenant}` : ''}`
  await load()
}

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault()
  $('login-error').hidden = true
  try {
    await api('POST', '/console/login', { token: $('token').value })
    $('token').value = ''
    await start()
  } catch {
    $('login-error').hidden = false
  }
})

async function decide(action) {
  for (const b of [$('approve'), $('deny')]) b.disabled = true
  try {
    const reason = $('reason').value.trim()
    const a = await api('POST', `/admin/v1/approvals/${encodeURIComponent(id)}/${action}`, reason ? { reason } : {})
    render({ ...a, policy_reason: a.policy_reason ?? $('a-reason').textContent })
    $('done').textContent =
      action === 'approve' ? 'Approved. The agent may now make exactly this call once.' : 'Denied. The agent is told so when it makes the call again.'
    $('done').hidden = false
  } catch (err) {
    flash(err.message, true)
    await load()
  } finally {
    for (const b of [$('approve'), $('deny')]) b.disabled = false
  }
}
$('approve').addEventListener('click', () => decide('approve'))
$('deny').addEventListener('click', () => decide('deny'))

start()
