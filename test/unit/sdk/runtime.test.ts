import { test } from 'node:test'
import assert from 'node:assert/strict'
import { backoffDelay, bearerChallengeError, parseRetryAfter } from '../../../src/sdk/runtime.js'
import { wellKnownUrl } from '../../../src/sdk/index.js'

const clock = { now: () => Date.parse('2026-11-29T00:00:00Z') }

test('Retry-After: delay-seconds, HTTP date, garbage, and a cap of one hour', () => {
  assert.equal(parseRetryAfter('7', clock), 7000)
  assert.equal(parseRetryAfter('Sun, 29 Nov 2026 00:00:30 GMT', clock), 30_000)
  assert.equal(parseRetryAfter('Sat, 28 Nov 2026 00:00:30 GMT', clock), 0)
  assert.equal(parseRetryAfter('soon', clock), undefined)
  assert.equal(parseRetryAfter(null, clock), undefined)
  assert.equal(parseRetryAfter('999999', clock), 3_600_000)
})

test('backoff: full jitter below the exponential ceiling, never below Retry-After', () => {
  assert.equal(
    backoffDelay(0, 250, 30_000, () => 0.999),
    249,
  )
  assert.equal(
    backoffDelay(3, 250, 30_000, () => 0.5),
    1000,
  )
  assert.equal(
    backoffDelay(20, 250, 30_000, () => 0.5),
    15_000,
  )
  assert.equal(
    backoffDelay(0, 250, 30_000, () => 0, 0),
    0,
  )
  assert.equal(
    backoffDelay(0, 250, 30_000, () => 0.9, 7000),
    7000,
  )
})

test('WWW-Authenticate: the Bearer error parameter, quoted or not', () => {
  assert.equal(bearerChallengeError('Bearer error="invalid_token", error_description="expired"'), 'invalid_token')
  assert.equal(bearerChallengeError('Bearer realm="aegis", error=insufficient_scope'), 'insufficient_scope')
  assert.equal(bearerChallengeError('Bearer realm="aegis"'), undefined)
  assert.equal(bearerChallengeError(null), undefined)
})

test('RFC 8414 §3.1 well-known URL inserts the segment before the issuer path', () => {
  assert.equal(wellKnownUrl('http://127.0.0.1:7400'), 'http://127.0.0.1:7400/.well-known/oauth-authorization-server')
  assert.equal(wellKnownUrl('https://auth.example/tenant/a/'), 'https://auth.example/.well-known/oauth-authorization-server/tenant/a')
})
