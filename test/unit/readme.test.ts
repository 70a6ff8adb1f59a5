import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { ERROR_CODES } from '../../src/errors.js'
import { CONFIG_KEYS, envName, type KeySpec } from '../../src/config/schema.js'

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')

test('the README error table lists every error code', () => {
  const missing = ERROR_CODES.filter((code) => !readme.includes(`\`${code}\``))
  assert.deepEqual(missing, [])
})

test('the README configuration table lists every setting', () => {
  const missing = (CONFIG_KEYS as readonly KeySpec[]).map(envName).filter((name) => !readme.includes(`\`${name}\``))
  assert.deepEqual(missing, [])
})
