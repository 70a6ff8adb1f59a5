import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { verifySlackSignature } from '../../../src/control-plane/approvals/callbacks.js'
import { signWebhook, verifyWebhookSignature } from '../../../src/control-plane/approvals/notifiers/webhook.js'

// The worked example of Slack's "Verifying requests from Slack".
const SLACK_SECRET = '8f742231b10e8888abcd99yyyzzz85a5'
const SLACK_TS = '1531420618'
const SLACK_BODY =
  'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA' +
  '&user_name=roadrunner&command=%2Fwebhook-collect&text=' +
  '&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN' +
  '&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c'
const SLACK_SIG = 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503'

describe('callback signatures', () => {
  test('Slack v0: the documented example verifies', () => {
    assert.equal(verifySlackSignature(SLACK_SECRET, { timestamp: SLACK_TS, signature: SLACK_SIG }, SLACK_BODY, 1531420618 + 10), null)
  })

  test('Slack v0: altered body, wrong secret, stale or future timestamp, malformed headers are refused', () => {
    const now = 1531420618
    assert.equal(verifySlackSignature(SLACK_SECRET, { timestamp: SLACK_TS, signature: SLACK_SIG }, `${SLACK_BODY}x`, now), 'bad signature')
    assert.equal(verifySlackSignature('other', { timestamp: SLACK_TS, signature: SLACK_SIG }, SLACK_BODY, now), 'bad signature')
    assert.match(String(verifySlackSignature(SLACK_SECRET, { timestamp: SLACK_TS, signature: SLACK_SIG }, SLACK_BODY, now + 301)), /five minutes/)
    assert.match(String(verifySlackSignature(SLACK_SECRET, { timestamp: SLACK_TS, signature: SLACK_SIG }, SLACK_BODY, now - 301)), /five minutes/)
    assert.match(String(verifySlackSignature(SLACK_SECRET, { timestamp: undefined, signature: SLACK_SIG }, SLACK_BODY, now)), /Timestamp/)
    assert.match(
      String(verifySlackSignature(SLACK_SECRET, { timestamp: SLACK_TS, signature: `v1=${SLACK_SIG.slice(3)}` }, SLACK_BODY, now)),
      /X-Slack-Signature/,
    )
  })

  test('webhook: a signature verifies with the right secret and timestamp only', () => {
    const body = '{"approval_id":"apr_x","decision":"approve"}'
    const header = signWebhook('s3cret-s3cret-s3cret', body, 1000)
    assert.match(header, /^t=1000,v1=[0-9a-f]{64}$/)
    assert.deepEqual(verifyWebhookSignature(header, body, ['other-secret-xxxxxx', 's3cret-s3cret-s3cret'], 1200), { ok: true, index: 1 })
    assert.equal(verifyWebhookSignature(header, `${body} `, ['s3cret-s3cret-s3cret'], 1200).ok, false)
    assert.equal(verifyWebhookSignature(header, body, ['s3cret-s3cret-s3cret'], 1301).ok, false)
    assert.equal(verifyWebhookSignature(undefined, body, ['s3cret-s3cret-s3cret'], 1000).ok, false)
    assert.equal(verifyWebhookSignature('t=1000', body, ['s3cret-s3cret-s3cret'], 1000).ok, false)
  })
})
