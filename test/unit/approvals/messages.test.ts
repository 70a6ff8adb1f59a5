import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { MASK, maskParams, paramFields } from '../../../src/control-plane/approvals/mask.js'
import { buildSlackMessage, slackEscape } from '../../../src/control-plane/approvals/notifiers/slack.js'
import { buildTeamsMessage, teamsEscape } from '../../../src/control-plane/approvals/notifiers/teams.js'
import { parseNotifiers } from '../../../src/control-plane/approvals/notifiers/dispatcher.js'
import type { Approval } from '../../../src/store/types.js'

function approval(over: Partial<Approval> = {}): Approval {
  return {
    id: 'apr_0123456789abcdef',
    tenant: 'acme',
    agentId: 'billing-bot',
    tool: 'payments.transfer',
    paramsCanonical: '{}',
    paramsHash: 'h',
    resource: null,
    requestCanonical: null,
    policyId: 'p1',
    policyVersion: 'v1',
    group: 'finance',
    requireConsole: false,
    status: 'pending',
    createdAt: 1_700_000_000_000,
    expiresAt: 1_700_000_900_000,
    decidedAt: null,
    decidedBy: null,
    reason: null,
    overrideJti: null,
    deliveries: [],
    ...over,
  }
}

describe('what approvers see', () => {
  test('secret-looking fields and policy-sanitized pointers are masked, nothing else', () => {
    const masked = maskParams({ amount: 5, card_number: '4111', nested: { apiKey: 'k', note: 'hi' }, list: [{ password: 'p' }], iban: 'DE89' }, [
      '/params/nested/note',
      '/params/missing',
    ])
    assert.deepEqual(masked, { amount: 5, card_number: MASK, nested: { apiKey: MASK, note: MASK }, list: [{ password: MASK }], iban: MASK })
  })

  test('fields are flattened, bounded in number and length', () => {
    const { fields, omitted } = paramFields({ a: 1, b: { c: 'x'.repeat(500) }, d: [1, 2] }, 2, 10)
    assert.deepEqual(fields, [
      ['a', '1'],
      ['b.c', 'xxxxxxxxx…'],
    ])
    assert.equal(omitted, 1)
  })

  test('Slack text escapes the control characters, so parameters cannot mention or link', () => {
    assert.equal(slackEscape('<!channel> & <http://evil|click>'), '&lt;!channel&gt; &amp; &lt;http://evil|click&gt;')
    const msg = JSON.stringify(buildSlackMessage({ approval: approval({ agentId: '<!here>' }), maskedParams: { to: '<@U123>' }, consoleUrl: 'http://c' }))
    assert.ok(!msg.includes('<!here>'))
    assert.ok(!msg.includes('<@U123>'))
  })

  test('a console-only request gets no Approve/Deny buttons in Slack', () => {
    const msg = buildSlackMessage({ approval: approval({ requireConsole: true }), maskedParams: {}, consoleUrl: 'http://c/console' }) as {
      blocks: Array<{ type: string; elements?: Array<{ action_id: string; url?: string }> }>
    }
    const actions = msg.blocks.find((b) => b.type === 'actions')!
    assert.deepEqual(
      actions.elements!.map((e) => e.action_id),
      ['aegis_open_console'],
    )
    assert.equal(actions.elements![0]!.url, 'http://c/console')
  })

  test('a long tool name keeps the Slack header within 150 characters', () => {
    const msg = buildSlackMessage({ approval: approval({ tool: 't'.repeat(200) }), maskedParams: {}, consoleUrl: 'http://c' }) as {
      blocks: Array<{ type: string; text?: { text: string } }>
    }
    assert.ok(msg.blocks[0]!.text!.text.length <= 150)
  })

  test('Teams text neutralizes Markdown links', () => {
    assert.equal(teamsEscape('[click](http://evil)'), '\\[click\\]\\(http://evil\\)')
    const card = JSON.stringify(buildTeamsMessage({ approval: approval(), maskedParams: { memo: '[x](http://evil)' }, consoleUrl: 'http://c' }))
    assert.ok(!card.includes('[x](http://evil)'))
  })

  test('notifier configuration is validated with every problem named', () => {
    assert.throws(
      () =>
        parseNotifiers({
          finance: [
            { type: 'sms', url: 'x' },
            { type: 'webhook', url: 'http://h' },
            { type: 'slack', url: 'ftp://x' },
          ],
          ops: 'nope',
        }),
      (e: Error) =>
        /finance\[0\]\.type/.test(e.message) &&
        /finance\[1\]: a webhook notifier needs "secret"/.test(e.message) &&
        /finance\[2\]\.url must be http/.test(e.message) &&
        /ops must be an array/.test(e.message),
    )
    const ok = parseNotifiers({ finance: [{ type: 'slack', url: 'https://hooks.slack.com/services/T/B/secret' }] })
    assert.equal(ok.get('finance')![0]!.name, 'finance/slack#0@hooks.slack.com')
  })
})
