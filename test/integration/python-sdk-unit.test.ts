/**
 * The Python SDK's tests that need no Aegis server (clients/python/tests:
 * the verifier's attack table, JWKS caching, the client's failure paths
 * against scripted servers), run with Debian's python3 and pytest.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runPython, skipWithoutPython } from '../helpers/python.js'

test('Python SDK: verifier attack table and client failure paths (pytest)', { skip: skipWithoutPython() }, async () => {
  const r = await runPython(['-m', 'pytest', 'tests/test_verify.py', 'tests/test_client_unit.py', '-q', '-p', 'no:cacheprovider'], {}, 100_000)
  assert.equal(r.code, 0, `pytest failed:\n${r.stdout}\n${r.stderr}`)
  assert.match(r.stdout, / passed/)
})
