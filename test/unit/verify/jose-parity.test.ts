/**
 * The one verifier (`aegis/verify`) against jose's `jwtVerify` on the same
 * tokens, under each configuration Aegis runs it with (gateway access
 * tokens, an RSA-enabled verifier, override tokens, the issuer's own check
 * for introspection): every token one accepts, the other accepts. Where the
 * verifier is deliberately stricter (RFC 8725 hardening jose leaves to the
 * caller), the case is listed apart, and the test checks jose really does
 * accept it, so the list stays true.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { constants, createHmac, sign as cryptoSign } from 'node:crypto'
import fc from 'fast-check'
import { createLocalJWKSet, jwtVerify } from 'jose'
import { createVerifier, localKeySet, type VerifyAlgorithm } from '../../../src/verify/index.js'
import { AUDIENCE, ed25519Key, rsaKey, type TestKey } from './fixtures.js'

const ISSUER = 'https://aegis.example'
const NOW = 1_800_000_000
const SKEW = 30

const k1 = ed25519Key('k1')
/** Same kid as k1, another key: what a forger holding some Ed25519 key signs with. */
const forger = ed25519Key('k1')
const unpublished = ed25519Key('k9')
const rs = rsaKey('r1', 'RS256')
const ps = rsaKey('p1', 'PS256')
const JWKS = { keys: [k1.jwk, rs.jwk, ps.jwk] }

interface Profile {
  name: string
  typ: string
  /** undefined: any audience (the issuer checking its own tokens). */
  audience: string | undefined
  algorithms: VerifyAlgorithm[]
}

const GATEWAY: Profile = { name: 'gateway access tokens', typ: 'at+jwt', audience: AUDIENCE, algorithms: ['EdDSA'] }
const PROFILES: Profile[] = [
  GATEWAY,
  { name: 'RSA-enabled verifier', typ: 'at+jwt', audience: AUDIENCE, algorithms: ['EdDSA', 'RS256', 'PS256'] },
  { name: 'override tokens', typ: 'aegis-override+jwt', audience: AUDIENCE, algorithms: ['EdDSA', 'RS256', 'PS256'] },
  { name: "the issuer's own tokens, any audience", typ: 'at+jwt', audience: undefined, algorithms: ['EdDSA'] },
]

function verifierAccepts(token: string, p: Profile): boolean {
  const verifier = createVerifier({
    issuer: ISSUER,
    audience: p.audience ?? (() => true),
    jwks: localKeySet(() => JWKS, { algorithms: ['EdDSA', 'RS256', 'PS256'] }),
    algorithms: p.algorithms,
    // RFC 7515 §4.1.9: the "application/" prefix may be left out; jose compares typ that way.
    typ: [p.typ, `application/${p.typ}`],
    clockSkewSeconds: SKEW,
    clock: { now: () => NOW * 1000 },
    cacheSize: 0,
  })
  try {
    verifier.verifySync(token)
    return true
  } catch {
    return false
  }
}

async function joseAccepts(token: string, p: Profile): Promise<boolean> {
  try {
    await jwtVerify(token, createLocalJWKSet(JWKS), {
      issuer: ISSUER,
      ...(p.audience !== undefined ? { audience: p.audience } : {}),
      algorithms: p.algorithms,
      typ: p.typ,
      clockTolerance: SKEW,
      currentDate: new Date(NOW * 1000),
      requiredClaims: ['iat', 'exp', 'sub', 'jti'],
      // Only for its iat check ("not in the future beyond the tolerance"), which the verifier always makes.
      maxTokenAge: 10 * 365 * 86400,
    })
    return true
  } catch {
    return false
  }
}

const b64 = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')

/** Signs header and payload with `key`, whatever `alg` the header claims (for confusion cases). */
function signWith(key: TestKey, header: Record<string, unknown>, payload: unknown): string {
  const input = `${b64(header)}.${typeof payload === 'string' ? Buffer.from(payload).toString('base64url') : b64(payload)}`
  const data = Buffer.from(input)
  const sig =
    key.alg === 'EdDSA'
      ? cryptoSign(null, data, key.privateKey)
      : key.alg === 'RS256'
        ? cryptoSign('sha256', data, key.privateKey)
        : cryptoSign('sha256', data, { key: key.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
  return `${input}.${sig.toString('base64url')}`
}

const claims = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  iss: ISSUER,
  sub: 'billing-bot',
  agent_id: 'billing-bot',
  client_id: 'cl_1',
  tenant: 'acme',
  aud: AUDIENCE,
  scope: 'payments:write',
  iat: NOW - 5,
  nbf: NOW - 5,
  exp: NOW + 600,
  jti: 'jti_1',
  policy_version: 'v1',
  ...extra,
})

/** A token for profile `p`: EdDSA with k1 and the profile's typ unless the case says otherwise. */
interface Case {
  name: string
  expect: 'accept' | 'refuse'
  token: (p: Profile) => string
}

const ok = (p: Profile, header: Record<string, unknown> = {}, extra: Record<string, unknown> = {}, key: TestKey = k1): string =>
  signWith(key, { alg: key.alg, typ: p.typ, kid: key.kid, ...header }, claims(extra))
const without = (name: string): Record<string, unknown> => ({ [name]: undefined })

const CASES: Case[] = [
  { name: 'valid', expect: 'accept', token: (p) => ok(p) },
  { name: 'typ with application/ prefix', expect: 'accept', token: (p) => ok(p, { typ: `application/${p.typ}` }) },
  { name: 'typ in upper case', expect: 'accept', token: (p) => ok(p, { typ: p.typ.toUpperCase() }) },
  { name: 'audience array containing ours', expect: 'accept', token: (p) => ok(p, {}, { aud: ['crm-tool', AUDIENCE] }) },
  { name: 'exp 29 s ago (within skew)', expect: 'accept', token: (p) => ok(p, {}, { exp: NOW - 29 }) },
  { name: 'nbf 30 s ahead (within skew)', expect: 'accept', token: (p) => ok(p, {}, { nbf: NOW + 30 }) },
  { name: 'iat 30 s ahead (within skew)', expect: 'accept', token: (p) => ok(p, {}, { iat: NOW + 30 }) },
  { name: 'no nbf', expect: 'accept', token: (p) => ok(p, {}, without('nbf')) },
  { name: 'wrong typ', expect: 'refuse', token: (p) => ok(p, { typ: 'JWT' }) },
  { name: 'no typ', expect: 'refuse', token: (p) => ok(p, { typ: undefined }) },
  { name: 'the other token type', expect: 'refuse', token: (p) => ok(p, { typ: p.typ === 'at+jwt' ? 'aegis-override+jwt' : 'at+jwt' }) },
  { name: 'alg none', expect: 'refuse', token: (p) => `${b64({ alg: 'none', typ: p.typ, kid: 'k1' })}.${b64(claims())}.` },
  {
    name: 'HS256 keyed with the public key',
    expect: 'refuse',
    token: (p) => {
      const input = `${b64({ alg: 'HS256', typ: p.typ, kid: 'k1' })}.${b64(claims())}`
      return `${input}.${createHmac('sha256', JSON.stringify(k1.jwk)).update(input).digest('base64url')}`
    },
  },
  { name: 'header alg RS256 over an Ed25519 key', expect: 'refuse', token: (p) => ok(p, { alg: 'RS256' }) },
  { name: 'header alg EdDSA naming an RSA key', expect: 'refuse', token: (p) => ok(p, { alg: 'EdDSA' }, {}, rs) },
  { name: 'PS256 header over an RS256 key', expect: 'refuse', token: (p) => ok(p, { alg: 'PS256' }, {}, rs) },
  { name: 'unknown kid', expect: 'refuse', token: (p) => ok(p, {}, {}, unpublished) },
  { name: 'signed by another key under a known kid', expect: 'refuse', token: (p) => ok(p, {}, {}, forger) },
  {
    name: 'payload altered after signing',
    expect: 'refuse',
    token: (p) => {
      const [h, , s] = ok(p).split('.')
      return `${h}.${b64(claims({ scope: 'admin' }))}.${s}`
    },
  },
  { name: 'signature truncated', expect: 'refuse', token: (p) => ok(p).slice(0, -4) },
  { name: 'two segments', expect: 'refuse', token: (p) => ok(p).split('.').slice(0, 2).join('.') },
  { name: 'four segments', expect: 'refuse', token: (p) => `${ok(p)}.e30` },
  { name: 'expired beyond skew', expect: 'refuse', token: (p) => ok(p, {}, { exp: NOW - 31 }) },
  { name: 'exp exactly at now - skew', expect: 'refuse', token: (p) => ok(p, {}, { exp: NOW - 30 }) },
  { name: 'nbf beyond skew', expect: 'refuse', token: (p) => ok(p, {}, { nbf: NOW + 31 }) },
  { name: 'iat beyond skew', expect: 'refuse', token: (p) => ok(p, {}, { iat: NOW + 31 }) },
  { name: 'exp a string', expect: 'refuse', token: (p) => ok(p, {}, { exp: String(NOW + 600) }) },
  { name: 'nbf a string', expect: 'refuse', token: (p) => ok(p, {}, { nbf: String(NOW) }) },
  { name: 'wrong issuer', expect: 'refuse', token: (p) => ok(p, {}, { iss: 'https://evil.example' }) },
  { name: 'issuer with a trailing slash', expect: 'refuse', token: (p) => ok(p, {}, { iss: `${ISSUER}/` }) },
  { name: 'no issuer', expect: 'refuse', token: (p) => ok(p, {}, without('iss')) },
  { name: 'no exp', expect: 'refuse', token: (p) => ok(p, {}, without('exp')) },
  { name: 'no iat', expect: 'refuse', token: (p) => ok(p, {}, without('iat')) },
  { name: 'no sub', expect: 'refuse', token: (p) => ok(p, {}, without('sub')) },
  { name: 'no jti', expect: 'refuse', token: (p) => ok(p, {}, without('jti')) },
  { name: 'crit naming an unknown extension', expect: 'refuse', token: (p) => ok(p, { crit: ['exp'], exp: 1 }) },
  { name: 'unencoded payload (b64: false)', expect: 'refuse', token: (p) => ok(p, { crit: ['b64'], b64: false }) },
  { name: 'payload not JSON', expect: 'refuse', token: (p) => signWith(k1, { alg: 'EdDSA', typ: p.typ, kid: 'k1' }, 'not json') },
  { name: 'payload a JSON array', expect: 'refuse', token: (p) => signWith(k1, { alg: 'EdDSA', typ: p.typ, kid: 'k1' }, [claims()]) },
  { name: 'RS256 token', expect: 'refuse', token: (p) => ok(p, {}, {}, rs) },
  { name: 'PS256 token', expect: 'refuse', token: (p) => ok(p, {}, {}, ps) },
]

/** Audience cases: only where the profile names one. */
const AUDIENCE_CASES: Case[] = [
  { name: 'wrong audience', expect: 'refuse', token: (p) => ok(p, {}, { aud: 'crm-tool' }) },
  { name: 'audience array without ours', expect: 'refuse', token: (p) => ok(p, {}, { aud: ['crm-tool', 'billing'] }) },
  { name: 'empty audience array', expect: 'refuse', token: (p) => ok(p, {}, { aud: [] }) },
  { name: 'no audience', expect: 'refuse', token: (p) => ok(p, {}, without('aud')) },
]

/** What RSA-enabled profiles accept that EdDSA-only ones refuse. */
const expectFor = (c: Case, p: Profile): 'accept' | 'refuse' => {
  if ((c.name === 'RS256 token' || c.name === 'PS256 token') && p.algorithms.includes(c.name.startsWith('RS') ? 'RS256' : 'PS256')) return 'accept'
  return c.expect
}

/**
 * Refused by the verifier, accepted by jose with the equivalent options: the
 * verifier's own hardening (docs/reference.md "Gateway" step 1, RFC 8725 §3).
 */
const STRICTER: Case[] = [
  { name: 'jku header (RFC 8725 §3.10: never trust a token-chosen key source)', expect: 'refuse', token: (p) => ok(p, { jku: 'https://evil.example/jwks' }) },
  { name: 'x5u header', expect: 'refuse', token: (p) => ok(p, { x5u: 'https://evil.example/cert' }) },
  { name: 'embedded jwk header', expect: 'refuse', token: (p) => ok(p, { jwk: { kty: 'OKP', crv: 'Ed25519', x: String(k1.jwk.x) } }) },
  { name: 'no kid (jose picks the single matching key)', expect: 'refuse', token: (p) => ok(p, { kid: undefined }) },
  { name: 'crit naming b64 with b64 true', expect: 'refuse', token: (p) => ok(p, { crit: ['b64'], b64: true }) },
  { name: 'b64 header without crit', expect: 'refuse', token: (p) => ok(p, { b64: true }) },
  { name: 'token over 8 KB', expect: 'refuse', token: (p) => ok(p, {}, { pad: 'x'.repeat(9000) }) },
  {
    name: 'claims nested deeper than 16',
    expect: 'refuse',
    token: (p) => ok(p, {}, { deep: JSON.parse(`${'{"a":'.repeat(20)}1${'}'.repeat(20)}`) as unknown }),
  },
  { name: 'sub not a string', expect: 'refuse', token: (p) => ok(p, {}, { sub: 42 }) },
  { name: 'empty jti', expect: 'refuse', token: (p) => ok(p, {}, { jti: '' }) },
  { name: 'Aegis claim of the wrong type', expect: 'refuse', token: (p) => ok(p, {}, { tenant: ['acme'] }) },
  { name: 'cnf not an object', expect: 'refuse', token: (p) => ok(p, {}, { cnf: 'jkt' }) },
  { name: 'audience array with a non-string member', expect: 'refuse', token: (p) => ok(p, {}, { aud: [AUDIENCE, 7] }) },
  {
    name: 'non-canonical signature encoding (trailing bits set)',
    expect: 'refuse',
    token: (p) => {
      const t = ok(p)
      const last = t.at(-1)!
      // Ed25519 signatures are 64 bytes: 86 base64url characters, the last one carrying 4 unused bits.
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
      return t.slice(0, -1) + alphabet[alphabet.indexOf(last) | 1]!
    },
  },
]

describe('the one verifier accepts exactly what jose.jwtVerify accepts', () => {
  for (const p of PROFILES) {
    test(`${p.name}: each case, both agree and give the expected answer`, async () => {
      const cases = p.audience === undefined ? CASES : [...CASES, ...AUDIENCE_CASES]
      for (const c of cases) {
        const token = c.token(p)
        const expected = expectFor(c, p) === 'accept'
        assert.equal(await joseAccepts(token, p), expected, `jose, ${c.name}`)
        assert.equal(verifierAccepts(token, p), expected, `verifier, ${c.name}`)
      }
    })
  }

  test('where the verifier is stricter than jose, jose really accepts and the verifier refuses', async () => {
    for (const c of STRICTER) {
      const token = c.token(GATEWAY)
      assert.equal(await joseAccepts(token, GATEWAY), true, `jose, ${c.name}`)
      assert.equal(verifierAccepts(token, GATEWAY), false, `verifier, ${c.name}`)
    }
    // Accepting every audience still means the claim must be there and well-formed: our tokens always carry one.
    const anyAudience = PROFILES.find((p) => p.audience === undefined)!
    for (const aud of [undefined, []]) {
      const token = ok(anyAudience, {}, { aud })
      assert.equal(await joseAccepts(token, anyAudience), true, `jose, aud ${JSON.stringify(aud)}`)
      assert.equal(verifierAccepts(token, anyAudience), false, `verifier, aud ${JSON.stringify(aud)}`)
    }
  })

  test('random claim sets around the time and identity boundaries: same answer', async () => {
    const offset = fc.integer({ min: -45, max: 45 })
    // Mostly present and mostly right, so that accepted and refused tokens both come up often.
    const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined, freq: 8 })
    let accepted = 0
    let refused = 0
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          profile: fc.constantFrom(...PROFILES),
          key: fc.constantFrom(k1, k1, k1, k1, forger, unpublished, rs, ps),
          alg: fc.option(fc.constantFrom<string>('EdDSA', 'RS256', 'PS256', 'ES256', 'HS256'), { nil: undefined, freq: 2 }),
          typ: maybe(fc.constantFrom('own', 'own', 'own', 'application/own', 'OWN', 'at+jwt', 'aegis-override+jwt', 'JWT')),
          iss: maybe(fc.constantFrom(ISSUER, ISSUER, ISSUER, `${ISSUER}/`, 'https://evil.example')),
          aud: maybe(fc.constantFrom<unknown>(AUDIENCE, AUDIENCE, 'crm-tool', [AUDIENCE, 'crm-tool'], ['crm-tool'], [])),
          exp: maybe(fc.oneof(offset, fc.constant(600))),
          nbf: fc.option(offset, { nil: undefined, freq: 2 }),
          iat: maybe(offset),
          sub: maybe(fc.constant('billing-bot')),
          jti: maybe(fc.constant('jti_r')),
        }),
        async (r) => {
          const typ = r.typ?.replace(/own/i, (m) => (m === 'OWN' ? r.profile.typ.toUpperCase() : r.profile.typ))
          const header: Record<string, unknown> = { alg: r.alg ?? r.key.alg, kid: r.key.kid, ...(typ !== undefined ? { typ } : {}) }
          const payload: Record<string, unknown> = { agent_id: 'billing-bot', tenant: 'acme', scope: 's' }
          if (r.iss !== undefined) payload.iss = r.iss
          if (r.aud !== undefined) payload.aud = r.aud
          if (r.exp !== undefined) payload.exp = NOW + r.exp
          if (r.nbf !== undefined) payload.nbf = NOW + r.nbf
          if (r.iat !== undefined) payload.iat = NOW + r.iat
          if (r.sub !== undefined) payload.sub = r.sub
          if (r.jti !== undefined) payload.jti = r.jti
          // The issuer's own check takes any audience but needs a well-formed one; that difference is covered above.
          if (r.profile.audience === undefined && (payload.aud === undefined || (Array.isArray(payload.aud) && payload.aud.length === 0)))
            payload.aud = 'crm-tool'
          const token = signWith(r.key, header, payload)
          const jose = await joseAccepts(token, r.profile)
          if (jose) accepted++
          else refused++
          assert.equal(verifierAccepts(token, r.profile), jose, JSON.stringify({ profile: r.profile.name, header, payload }))
        },
      ),
      { numRuns: 400, seed: 16 },
    )
    assert.ok(accepted > 10 && refused > 10, `both answers occur (accepted ${accepted}, refused ${refused})`)
  })
})
