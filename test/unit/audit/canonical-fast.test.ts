import { test } from 'node:test'
import assert from 'node:assert/strict'
import canonicalize from 'canonicalize'
import { eventHash, eventHashPrepared, normalizeData, normalizeText, prepareData } from '../../../src/control-plane/audit/chain.js'
import { sha256b64url } from '../../../src/lib/hash.js'

/** Deterministic PRNG (mulberry32) so a failure reproduces. */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const pkg = canonicalize as unknown as (v: unknown) => string | undefined

/** The reference: what the writer did before the fast path (JSON round trip, then the package). */
function reference(data: Record<string, unknown> | undefined): { data: Record<string, unknown>; canonical: string } | 'throws' {
  try {
    const d = normalizeData(data)
    const text = pkg(d)
    if (text === undefined) return 'throws'
    return { data: d, canonical: text }
  } catch {
    return 'throws'
  }
}

function fast(data: Record<string, unknown> | undefined): { data: Record<string, unknown>; canonical: string } | 'throws' {
  try {
    return prepareData(data)
  } catch {
    return 'throws'
  }
}

const CHARS = [
  'a',
  'Z',
  '_',
  ':',
  '/',
  ' ',
  '"',
  '\\',
  '\n',
  '\t',
  '\u0000',
  '\u001f',
  '\u007f',
  'é',
  '€',
  '\u2028',
  '\u2029',
  '😀',
  '\ud800',
  '\udc00',
  '\udbff\udfff',
  '1',
  '9',
  '0',
]

function randString(r: () => number, max = 8): string {
  let s = ''
  const n = Math.floor(r() * max)
  for (let i = 0; i < n; i++) s += CHARS[Math.floor(r() * CHARS.length)]!
  return s
}

const NUMBERS = [
  0,
  -0,
  1,
  -1,
  1.5,
  0.1,
  1e21,
  1e-7,
  123456789012345680000,
  5e-324,
  Number.MAX_SAFE_INTEGER,
  2 ** 53 + 1,
  1764390000000,
  -1e300,
  NaN,
  Infinity,
  -Infinity,
  // biome-ignore lint/correctness/noPrecisionLoss: RFC 8785's own example of a literal that rounds; its shortest form is the point
  333333333.33333329,
]

class Custom {
  x = 1
}

function randValue(r: () => number, depth: number): unknown {
  const k = Math.floor(r() * (depth > 4 ? 6 : 12))
  switch (k) {
    case 0:
      return randString(r)
    case 1:
      return NUMBERS[Math.floor(r() * NUMBERS.length)]
    case 2:
      return r() < 0.5
    case 3:
      return null
    case 4:
      return r() < 0.5 ? undefined : (r() - 0.5) * 10 ** Math.floor(r() * 40 - 20)
    case 5:
      return `jti-${Math.floor(r() * 1e9).toString(36)}`
    case 6:
    case 7:
    case 8:
      return randObject(r, depth + 1)
    case 9:
      return Array.from({ length: Math.floor(r() * 4) }, () => randValue(r, depth + 1))
    case 10: {
      const odd = [
        new Date(1764390000000),
        { toJSON: () => 'via toJSON' },
        new Custom(),
        () => 1,
        Symbol('s'),
        Object.create(null) as object,
        [1, undefined, 3],
        JSON.parse('{"__proto__":{"a":1}}') as object,
      ]
      return odd[Math.floor(r() * odd.length)]
    }
    default:
      return randString(r, 3)
  }
}

function randObject(r: () => number, depth: number): Record<string, unknown> {
  const o: Record<string, unknown> = {}
  const n = Math.floor(r() * 6)
  for (let i = 0; i < n; i++) {
    const key = r() < 0.7 ? ['jti', 'agent_id', 'scope', 'aud', 'exp', 'kid', 'b', 'B', 'a_b', 'é', '😀', 'ﬀ'][Math.floor(r() * 12)]! : randString(r, 5)
    o[key] = randValue(r, depth)
  }
  return o
}

test('prepareData gives the same normalized data and the same canonical bytes as normalizeData + the canonicalize package', () => {
  const r = rng(20261129)
  let fastCount = 0
  for (let i = 0; i < 20_000; i++) {
    const data = i % 50 === 0 ? undefined : randObject(r, 0)
    const want = reference(data)
    const got = fast(data)
    if (want === 'throws') {
      assert.equal(got, 'throws', `case ${i}: the reference refuses ${String(data && Object.keys(data))}`)
      continue
    }
    assert.notEqual(got, 'throws', `case ${i}: refused what the reference accepts`)
    if (got === 'throws') continue
    assert.equal(got.canonical, want.canonical, `case ${i}`)
    assert.deepEqual(got.data, want.data, `case ${i}`)
    // What the store keeps reads back to the same canonical text.
    assert.equal(pkg(JSON.parse(JSON.stringify(got.data))), want.canonical, `case ${i}`)
    fastCount++
  }
  assert.ok(fastCount > 5_000, `only ${fastCount} cases compared`)
})

test('prepareData on the token.issued shape, edge numbers and strings', () => {
  const cases: Array<Record<string, unknown>> = [
    {
      jti: '6d0f8a0e-1f7c-4a51-9b68-5d2b3c9a1e77',
      agent_id: 'bench-agent',
      client_id: 'bc_x',
      scope: 'a b',
      aud: ['https://api.example'],
      exp: 1764390000,
      kid: 'k1',
      grant_type: 'client_credentials',
      policy_version: 'none',
      capability_hash: 'h',
    },
    { n: -0, big: 1e21, small: 1e-7, frac: 0.1 + 0.2, max: Number.MAX_VALUE, min: Number.MIN_VALUE },
    { lone: 'a\ud800b', low: '\udc00', pair: '😀', ctl: '\u0000\u001f\u007f', ls: '\u2028' },
    { '10': 1, '9': 2, a: 3 },
    { b: { d: [1, { z: 1, a: 2 }], c: null }, a: [] },
    { u: undefined, d: new Date(0), nan: NaN },
    {},
  ]
  for (const data of cases) {
    const want = reference(data)
    assert.notEqual(want, 'throws')
    assert.deepEqual(fast(data), want)
  }
  // A lone surrogate in a key has no RFC 8785 form: both refuse.
  assert.equal(reference({ 'k\ud800': 1 }), 'throws')
  assert.equal(fast({ 'k\ud800': 1 }), 'throws')
})

test('eventHashPrepared equals eventHash over the package canonical form', () => {
  const r = rng(7)
  const texts = (): string | null => (r() < 0.2 ? null : normalizeText(randString(r, 10)))
  for (let i = 0; i < 5_000; i++) {
    let p: ReturnType<typeof prepareData>
    try {
      p = prepareData(i % 3 === 0 ? { jti: `j${i}`, exp: i, aud: ['x'] } : randObject(r, 3))
    } catch {
      continue // no canonical form (compared in the test above)
    }
    const fields = {
      chainId: r() < 0.9 ? `cp-${randString(r, 4).replace(/[\ud800-\udfff]/g, '')}` : 'cp-\ud800',
      chainSeq: Math.floor(r() * 1e12),
      ts: 1764390000000 + Math.floor(r() * 1e6),
      type: normalizeText(randString(r, 6)) ?? '',
      tenant: texts(),
      actor: texts(),
      subject: texts(),
      data: p.data,
      prevHash: sha256b64url(String(i)),
    }
    let want: string | Error
    try {
      want = eventHash(fields)
    } catch (e) {
      want = e as Error
    }
    let got: string | Error
    try {
      got = eventHashPrepared(fields, p.canonical)
    } catch (e) {
      got = e as Error
    }
    if (typeof want === 'string') assert.equal(got, want, `case ${i}`)
    else assert.ok(got instanceof Error, `case ${i}: the reference refuses, the fast path must too`)
  }
})

test('normalizeText replaces each lone surrogate and NUL with U+FFFD, like the regular-expression reference', () => {
  const lone = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g
  const parts = ['a', '\ud800', '\udc00', '😀', '\udc00\ud800', '\ud800\ud800\udc00', 'x\udbff', '\u0000', 'é']
  const r = rng(99)
  for (let i = 0; i < 20_000; i++) {
    let s = ''
    for (let n = Math.floor(r() * 7); n > 0; n--) s += parts[Math.floor(r() * parts.length)]!
    assert.equal(normalizeText(s), s.replace(lone, '\uFFFD').replaceAll('\u0000', '\uFFFD'), JSON.stringify(s))
  }
  assert.equal(normalizeText(null), null)
  assert.equal(normalizeText(undefined), null)
})
