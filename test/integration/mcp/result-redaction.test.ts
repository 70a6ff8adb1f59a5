/** `redact:/result/…` applied to MCP tool results (the pure part of MCP mode's result redaction). */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { redactToolResult, resultObligations } from '../../../src/gateway/modes/mcp/index.js'
import { WITHHELD } from '../../../src/gateway/modes/mcp/result-redaction.js'
import type { Obligation } from '../../../src/policy/types.js'

const SSN: Obligation[] = [
  { type: 'redact', path: '/result/ssn' },
  { type: 'redact', path: '/result/rows/*/ssn' },
]

describe('MCP result redaction', () => {
  test('only /result/ obligations are result obligations', () => {
    assert.deepEqual(resultObligations([{ type: 'redact', path: '/params/card' }, ...SSN]), SSN)
  })

  test('structuredContent and JSON text are redacted; the input is not mutated', () => {
    const value = { ssn: '1', name: 'a', rows: [{ ssn: '2' }, { ssn: '3', x: 1 }] }
    const result = { content: [{ type: 'text', text: JSON.stringify(value) }], structuredContent: value, isError: false }
    const frozen = JSON.stringify(result)
    const out = redactToolResult(result, SSN) as typeof result
    const expected = { ssn: '[REDACTED]', name: 'a', rows: [{ ssn: '[REDACTED]' }, { ssn: '[REDACTED]', x: 1 }] }
    assert.deepEqual(out.structuredContent, expected)
    assert.deepEqual(JSON.parse(out.content[0]!.text), expected)
    assert.equal(out.isError, false)
    assert.equal(JSON.stringify(result), frozen)
  })

  test('content the pointers cannot address is withheld, never passed unchecked', () => {
    const result = {
      content: [
        { type: 'text', text: 'SSN is 123-45-6789' },
        { type: 'text', text: '"a JSON string"' },
        { type: 'image', data: 'aGVsbG8=', mimeType: 'image/png' },
        { type: 'resource', resource: { uri: 'file:///x', text: '{"ssn":"1"}' } },
        { type: 'text', text: '{"name":"no ssn here"}' },
      ],
    }
    const out = redactToolResult(result, SSN) as { content: Array<{ type: string; text?: string }> }
    assert.deepEqual(out.content.slice(0, 4), Array(4).fill({ type: 'text', text: WITHHELD }))
    assert.deepEqual(out.content[4], result.content[4])
    assert.ok(!JSON.stringify(out).includes('123-45-6789'))
  })

  test('no obligations, or no result object: unchanged', () => {
    const r = { content: [{ type: 'text', text: 'plain' }] }
    assert.equal(redactToolResult(r, []), r)
    assert.equal(redactToolResult('x', SSN), 'x')
  })
})
