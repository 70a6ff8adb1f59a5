import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { dispatcherOf } from '../../../src/control-plane/approvals/registry.js'
import { signWebhook } from '../../../src/control-plane/approvals/notifiers/webhook.js'
import { call, startHarness, startPeer, transfer, type Harness, type Peer } from './harness.js'

const SLACK_SECRET = '8f742231b10e8888abcd99yyyzzz85a5'
const WEBHOOK_SECRET = 'whsec_0123456789abcdef0123456789'

/** A Slack interactivity request as Slack sends it: form body `payload=<json>`, signed v0. */
function slackRequest(payload: Record<string, unknown>, opts: { ts?: number; secret?: string; tamper?: boolean } = {}) {
  const ts = String(opts.ts ?? Math.floor(Date.now() / 1000))
  const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString()
  const sig =
    'v0=' +
    createHmac('sha256', opts.secret ?? SLACK_SECRET)
      .update(`v0:${ts}:${body}`)
      .digest('hex')
  return {
    method: 'POST',
    body: opts.tamper ? body.replace('aegis_', 'aegis%5F') : body,
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': ts, 'x-slack-signature': sig },
  }
}

function blockActions(approvalId: string, actionId: 'aegis_approve' | 'aegis_deny', user = 'U0APPROVER', team = 'T0AEGIS') {
  return {
    type: 'block_actions',
    team: { id: team, domain: 'acme' },
    user: { id: user, username: 'alice', team_id: team },
    api_app_id: 'A0AEGIS',
    container: { type: 'message', message_ts: '1700000000.000100', channel_id: 'C0APPROVALS', is_ephemeral: false },
    trigger_id: '123.456.abc',
    channel: { id: 'C0APPROVALS', name: 'approvals' },
    response_url: 'https://hooks.slack.com/actions/T0AEGIS/1/abc',
    actions: [
      {
        action_id: actionId,
        block_id: 'aegis_approval_actions',
        text: { type: 'plain_text', text: 'Approve' },
        value: approvalId,
        type: 'button',
        action_ts: '1700000001.000200',
      },
    ],
  }
}

describe('notifiers and decision callbacks', () => {
  let h: Harness
  let slack: Peer
  let teams: Peer
  let hook: Peer
  let flaky: Peer
  let dead: Peer

  before(async () => {
    slack = await startPeer()
    teams = await startPeer()
    hook = await startPeer()
    flaky = await startPeer((i) => (i === 0 ? 503 : 200))
    dead = await startPeer(() => 500)
    h = await startHarness({
      overrides: {
        approvals: {
          slackSigningSecret: SLACK_SECRET,
          notifiers: {
            finance: [
              { type: 'slack', url: `${slack.url}/services/T0AEGIS/B0HOOK/secretpart` },
              { type: 'teams', url: `${teams.url}/workflows/abc/triggers/manual/paths/invoke?sig=secret` },
              { type: 'webhook', url: `${hook.url}/aegis`, secret: WEBHOOK_SECRET },
            ],
            ops: [
              { type: 'slack', url: `${flaky.url}/hook` },
              { type: 'webhook', url: `${dead.url}/hook`, secret: WEBHOOK_SECRET },
            ],
          },
        },
      },
    })
    await h.adminToken({ role: 'approver', tenant: 'acme', groups: ['finance'], linked: ['slack:T0AEGIS/U0APPROVER', 'webhook:alice@example.com'] })
    await h.adminToken({ role: 'approver', tenant: 'acme', groups: ['ops'], linked: ['slack:T0AEGIS/U0OPS'] })
  })
  after(async () => {
    await h.close()
    for (const p of [slack, teams, hook, flaky, dead]) await p.close()
  })

  test('a new request reaches Slack, Teams and the webhook in their documented shapes, secrets masked', async () => {
    const { approval } = await h.service.openApproval({ ...transfer(4200), mask: ['/params/to'] })
    await Promise.all([slack.waitFor(1), teams.waitFor(1), hook.waitFor(1)])
    await dispatcherOf(h.service)!.idle()

    const s = JSON.parse(slack.requests[0]!.body) as { text: string; blocks: Array<Record<string, any>> }
    assert.equal(slack.requests[0]!.path, '/services/T0AEGIS/B0HOOK/secretpart')
    assert.equal(slack.requests[0]!.headers['content-type'], 'application/json')
    assert.equal(typeof s.text, 'string')
    assert.deepEqual(
      s.blocks.map((b) => b.type),
      ['header', 'section', 'section', 'context', 'actions'],
    )
    assert.equal(s.blocks[0]!.text.type, 'plain_text')
    assert.ok(s.blocks[0]!.text.text.length <= 150)
    assert.equal(s.blocks[1]!.text.type, 'mrkdwn')
    assert.ok(s.blocks[2]!.fields.length <= 10)
    for (const f of s.blocks[2]!.fields) {
      assert.equal(f.type, 'mrkdwn')
      assert.ok(f.text.length <= 2000)
    }
    const actions = s.blocks[4]!
    const [approve, deny] = actions.elements as Array<Record<string, any>>
    assert.deepEqual(
      [approve!.type, approve!.action_id, approve!.style, approve!.value, approve!.text.type],
      ['button', 'aegis_approve', 'primary', approval.id, 'plain_text'],
    )
    assert.deepEqual([deny!.type, deny!.action_id, deny!.style, deny!.value], ['button', 'aegis_deny', 'danger', approval.id])
    const slackText = slack.requests[0]!.body
    assert.ok(slackText.includes('4200'))
    assert.ok(!slackText.includes('4111111111111111'), 'card number masked')
    assert.ok(!slackText.includes('DE89370400440532013000'), 'policy-sanitized field masked')

    const t = JSON.parse(teams.requests[0]!.body) as Record<string, any>
    assert.equal(t.type, 'message')
    assert.equal(t.attachments.length, 1)
    assert.equal(t.attachments[0].contentType, 'application/vnd.microsoft.card.adaptive')
    const card = t.attachments[0].content
    assert.equal(card.type, 'AdaptiveCard')
    assert.equal(card.version, '1.4')
    assert.equal(card.$schema, 'http://adaptivecards.io/schemas/adaptive-card.json')
    assert.ok(card.body.every((e: Record<string, unknown>) => e.type === 'TextBlock' || e.type === 'FactSet'))
    assert.ok(
      card.body
        .filter((e: Record<string, unknown>) => e.type === 'FactSet')
        .every((f: { facts: Array<Record<string, unknown>> }) => f.facts.every((x) => typeof x.title === 'string' && typeof x.value === 'string')),
    )
    assert.deepEqual(
      card.actions.map((a: Record<string, unknown>) => a.type),
      ['Action.OpenUrl'],
    )
    assert.match(card.actions[0].url, new RegExp(`/console/approvals/${approval.id}$`))
    assert.ok(!teams.requests[0]!.body.includes('4111111111111111'))

    const w = hook.requests[0]!
    const sig = String(w.headers['aegis-signature'])
    const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(sig)
    assert.ok(m, sig)
    assert.equal(m[2], createHmac('sha256', WEBHOOK_SECRET).update(`${m[1]}.${w.body}`).digest('hex'))
    const wb = JSON.parse(w.body) as Record<string, any>
    assert.equal(wb.type, 'approval.requested')
    assert.equal(wb.approval.id, approval.id)
    assert.equal(wb.approval.params_hash, approval.paramsHash)
    assert.equal(wb.approval.params.amount, 4200)
    assert.notEqual(wb.approval.params.card_number, '4111111111111111')
    assert.equal(wb.decision_url, 'http://aegis.test/integrations/webhook/decisions')

    const stored = await h.store.approvals.get(approval.id)
    assert.deepEqual(
      stored!.deliveries.map((d) => [d.status, d.attempts]),
      [
        ['delivered', 1],
        ['delivered', 1],
        ['delivered', 1],
      ],
    )
    assert.ok(
      stored!.deliveries.every((d) => !d.notifier.includes('secret')),
      'notifier names never carry the webhook URL path',
    )
  })

  test('failed deliveries are retried with backoff and visible on the request', async () => {
    const { approval } = await h.service.openApproval(transfer(4300, { group: 'ops' }))
    await dispatcherOf(h.service)!.idle()
    const admin = await h.adminToken({ role: 'admin', tenant: 'acme' })
    const res = await call(`${h.url}/admin/v1/approvals/${approval.id}`, { token: admin.token })
    const deliveries = res.body.deliveries as Array<Record<string, unknown>>
    assert.equal(deliveries.length, 2)
    assert.deepEqual([deliveries[0]!.status, deliveries[0]!.attempts, deliveries[0]!.last_error], ['delivered', 2, null])
    assert.deepEqual([deliveries[1]!.status, deliveries[1]!.attempts, deliveries[1]!.last_error], ['failed', 3, 'HTTP 500'])
    assert.equal(dead.requests.length, 3)
  })

  test('a signed Slack click by a linked approver of the group approves', async () => {
    const { approval } = await h.service.openApproval(transfer(4400))
    const res = await call(`${h.url}/integrations/slack/interactions`, slackRequest(blockActions(approval.id, 'aegis_approve')))
    assert.equal(res.status, 200, JSON.stringify(res.body))
    const stored = await h.store.approvals.get(approval.id)
    assert.equal(stored?.status, 'approved')
    assert.match(String(stored?.decidedBy), /^slack:T0AEGIS\/U0APPROVER as admin:/)
    const ev = (await h.events('approval.approved')).find((e) => e.subject === approval.id)
    assert.equal(ev?.data.via, 'slack')
    // A double click is refused and changes nothing.
    const again = await call(`${h.url}/integrations/slack/interactions`, slackRequest(blockActions(approval.id, 'aegis_deny')))
    assert.equal(again.status, 409)
    assert.match(String(again.body.error_description), /already approved/)
    assert.equal((await h.store.approvals.get(approval.id))?.status, 'approved')
  })

  test('Slack callbacks with a bad signature, an old timestamp, or from a wrong approver are refused', async () => {
    const { approval } = await h.service.openApproval(transfer(4500))
    const url = `${h.url}/integrations/slack/interactions`
    const badSig = await call(url, slackRequest(blockActions(approval.id, 'aegis_approve'), { secret: 'not-the-secret' }))
    assert.equal(badSig.status, 401)
    const tampered = await call(url, slackRequest(blockActions(approval.id, 'aegis_approve'), { tamper: true }))
    assert.equal(tampered.status, 401)
    const old = await call(url, slackRequest(blockActions(approval.id, 'aegis_approve'), { ts: Math.floor(h.clock.now() / 1000) - 301 }))
    assert.equal(old.status, 401)
    const unsigned = await call(url, { method: 'POST', body: 'payload=%7B%7D', headers: { 'content-type': 'application/x-www-form-urlencoded' } })
    assert.equal(unsigned.status, 401)
    const unlinked = await call(url, slackRequest(blockActions(approval.id, 'aegis_approve', 'U0STRANGER')))
    assert.equal(unlinked.status, 403)
    assert.match(String(unlinked.body.error_description), /not linked/)
    const otherGroup = await call(url, slackRequest(blockActions(approval.id, 'aegis_approve', 'U0OPS')))
    assert.equal(otherGroup.status, 403)
    assert.match(String(otherGroup.body.error_description), /not in group finance/)
    assert.equal((await h.store.approvals.get(approval.id))?.status, 'pending')
    const refusedCallbacks = await h.events('approval.callback_refused')
    assert.ok(refusedCallbacks.length >= 4)
  })

  test('a signed webhook decision from a linked approver decides; a bad signature is refused', async () => {
    const { approval } = await h.service.openApproval(transfer(4600))
    const url = `${h.url}/integrations/webhook/decisions`
    const body = JSON.stringify({ approval_id: approval.id, decision: 'deny', approver: 'alice@example.com', reason: 'not budgeted' })
    const bad = await call(url, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', 'aegis-signature': signWebhook('wrong-secret-wrong-secret', body, Math.floor(h.clock.now() / 1000)) },
    })
    assert.equal(bad.status, 401)
    const stale = await call(url, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', 'aegis-signature': signWebhook(WEBHOOK_SECRET, body, Math.floor(h.clock.now() / 1000) - 600) },
    })
    assert.equal(stale.status, 401)
    const stranger = JSON.stringify({ approval_id: approval.id, decision: 'approve', approver: 'mallory@example.com' })
    const unlinked = await call(url, {
      method: 'POST',
      body: stranger,
      headers: { 'content-type': 'application/json', 'aegis-signature': signWebhook(WEBHOOK_SECRET, stranger, Math.floor(h.clock.now() / 1000)) },
    })
    assert.equal(unlinked.status, 403)
    const ok = await call(url, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json; charset=utf-8', 'aegis-signature': signWebhook(WEBHOOK_SECRET, body, Math.floor(h.clock.now() / 1000)) },
    })
    assert.equal(ok.status, 200, JSON.stringify(ok.body))
    assert.equal(ok.body.status, 'denied')
    const stored = await h.store.approvals.get(approval.id)
    assert.equal(stored?.reason, 'not budgeted')
    assert.match(String(stored?.decidedBy), /^webhook:alice@example.com as admin:/)
  })
})
