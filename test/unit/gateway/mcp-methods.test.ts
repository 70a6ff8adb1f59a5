import { test } from 'node:test'
import assert from 'node:assert/strict'
import { advertisedCapabilities } from '../../../src/gateway/modes/mcp/capabilities.js'
import { DEFAULT_ALLOW_METHODS } from '../../../src/gateway/modes/mcp/jsonrpc.js'
import { promptAction, reservedAction, resourceAction, templateAction } from '../../../src/gateway/modes/mcp/method-actions.js'
import { redactPromptResult, redactResourceResult } from '../../../src/gateway/modes/mcp/method-redaction.js'
import { WITHHELD } from '../../../src/gateway/modes/mcp/result-redaction.js'

const UPSTREAM = {
  tools: { listChanged: true },
  resources: { subscribe: true, listChanged: true },
  prompts: { listChanged: true },
  logging: {},
  completions: {},
  tasks: { list: {} },
  experimental: { 'vendor/thing': {} },
  someday: {},
}

test('initialize advertises a capability only when the route lets one of its methods through', () => {
  assert.deepEqual(advertisedCapabilities(UPSTREAM, DEFAULT_ALLOW_METHODS), {
    tools: { listChanged: true },
    resources: { subscribe: true, listChanged: true },
    prompts: { listChanged: true },
    logging: {},
    completions: {},
  })
  assert.deepEqual(advertisedCapabilities(UPSTREAM, ['initialize', 'tools/call']), { tools: { listChanged: true } })
  // resources without subscribe: the capability stays, its subscribe flag goes.
  assert.deepEqual(advertisedCapabilities(UPSTREAM, ['resources/read', 'tasks/*']), { resources: { listChanged: true }, tasks: { list: {} } })
  assert.deepEqual(advertisedCapabilities(UPSTREAM, ['*']), {})
})

test('a resource URI is decided as resource:<scheme> on the URI; what cannot be decided is refused', () => {
  assert.deepEqual(resourceAction('test://static-text'), { action: 'resource:test', resource: 'test://static-text' })
  assert.deepEqual(resourceAction('HTTPS://Example.com/a'), { action: 'resource:https', resource: 'HTTPS://Example.com/a' })
  assert.deepEqual(resourceAction('file:///srv/report.txt'), { action: 'resource:file', resource: 'file:///srv/report.txt' })
  for (const bad of [
    '',
    'no-scheme',
    '1x://a',
    'file:///srv/../etc/passwd',
    'file:///srv/%2E%2e/etc',
    'file:///srv/./x',
    'a:b c',
    'a:b\u0000',
    'x:'.padEnd(2049, 'a'),
  ]) {
    assert.equal(typeof resourceAction(bad), 'string', bad)
  }
  assert.equal(typeof resourceAction(42), 'string')
  // A dot inside a segment is not a dot segment.
  assert.equal(typeof resourceAction('file:///srv/.hidden/..x'), 'object')
  assert.equal(templateAction('test://template/{id}/data'), 'resource:test')
  assert.equal(templateAction('{scheme}://x'), null)
})

test('prompt actions, and the prefixes no tool may use', () => {
  assert.equal(promptAction('test_simple_prompt'), 'prompt:test_simple_prompt')
  assert.equal(promptAction('bad name'), null)
  assert.equal(promptAction(7), null)
  assert.equal(reservedAction('resource:file'), true)
  assert.equal(reservedAction('prompt:x'), true)
  assert.equal(reservedAction('crm.read'), false)
})

test('result redaction on resources and prompts: JSON text redacted, anything else withheld', () => {
  const obligations = [{ type: 'redact' as const, path: '/result/ssn' }]
  const read = {
    contents: [
      { uri: 'crm://c/1', mimeType: 'application/json', text: JSON.stringify({ name: 'Ada', ssn: '123' }) },
      { uri: 'crm://c/1.txt', mimeType: 'text/plain', text: 'ssn 123' },
      { uri: 'crm://c/1.png', mimeType: 'image/png', blob: 'AAAA' },
    ],
  }
  const out = redactResourceResult(read, obligations) as typeof read
  assert.deepEqual(JSON.parse(out.contents[0]!.text!), { name: 'Ada', ssn: '[REDACTED]' })
  assert.deepEqual(out.contents[1], { uri: 'crm://c/1.txt', mimeType: 'text/plain', text: WITHHELD })
  assert.deepEqual(out.contents[2], { uri: 'crm://c/1.png', mimeType: 'text/plain', text: WITHHELD })
  assert.equal(read.contents[0]!.text!.includes('123'), true, 'the input is not mutated')
  const prompt = {
    messages: [
      { role: 'user', content: { type: 'text', text: JSON.stringify({ ssn: '123', q: 'x' }) } },
      { role: 'user', content: { type: 'image', data: 'AAAA', mimeType: 'image/png' } },
    ],
  }
  const p = redactPromptResult(prompt, obligations) as typeof prompt
  assert.deepEqual(JSON.parse((p.messages[0]!.content as { text: string }).text), { ssn: '[REDACTED]', q: 'x' })
  assert.deepEqual(p.messages[1]!.content, { type: 'text', text: WITHHELD })
  assert.equal(redactResourceResult(read, []), read)
})
