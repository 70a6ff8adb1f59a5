import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { ManualClock } from '../../../src/lib/clock.js'
import { createVerifier, VerifyError, type Verifier, type VerifyFailureReason } from '../../../src/verify/index.js'
import {
  AUDIENCE,
  claimsAt,
  ed25519Key,
  hmacSign,
  rawSign,
  rsaKey,
  signToken,
  startDecoyServer,
  startJwksServer,
  type JwksServer,
  type TestKey,
} from './fixtures.js'

const ISSUER = 'https://aegis.test'

/** Asserts the token is refused with invalid_token (and, if given, one of `reasons`) without echoing it. */
function assertRefused(verifier: Verifier, token: unknown, reasons?: VerifyFailureReason[]): VerifyError {
  let caught: unknown
  try {
    verifier.verifySync(token as string)
  } catch (err) {
    caught = err
  }
  assert.ok(caught instanceof VerifyError, `expected a VerifyError, got ${String(caught)}`)
  assert.equal(caught.code, 'invalid_token')
  assert.equal(caught.status, 401)
  if (reasons) assert.ok(reasons.includes(caught.reason), `reason ${caught.reason} not in ${reasons.join(',')}`)
  if (typeof token === 'string') {
    for (const part of token.split('.')) if (part.length >= 8) assert.ok(!caught.message.includes(part), 'error message echoes the token')
  }
  return caught
}

// The attack suite runs once per Ed25519 implementation: libsodium (the default) and node:crypto.
for (const ed25519 of ['libsodium', 'node:crypto'] as const)
  describe(`verifier (${ed25519}): RFC 8725 checks and attack tokens`, () => {
    let jwks: JwksServer
    let decoy: Awaited<ReturnType<typeof startDecoyServer>>
    let k1: TestKey
    let verifier: Verifier
    const clock = new ManualClock(Date.UTC(2026, 10, 29, 3, 0, 0))
    const now = () => Math.floor(clock.now() / 1000)

    before(async () => {
      k1 = ed25519Key('k1')
      jwks = await startJwksServer([k1])
      decoy = await startDecoyServer()
      verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwksUrl: jwks.jwksUrl, clock, ed25519 })
      assert.equal(verifier.ed25519Backend, ed25519)
      await verifier.jwks.ready
    })
    after(async () => {
      verifier.close()
      await jwks.close()
      await decoy.close()
    })

    test('a valid token verifies and exposes frozen claims, kid, header and token hash', async () => {
      const token = await signToken(k1, claimsAt(ISSUER, now(), { cnf: { jkt: 'abc' } }))
      const v = verifier.verifySync(token)
      assert.equal(v.claims.sub, 'billing-bot')
      assert.equal(v.claims.tenant, 'acme')
      assert.equal(v.kid, 'k1')
      assert.equal(v.header.alg, 'EdDSA')
      assert.equal(v.header.typ, 'at+jwt')
      assert.equal(v.tokenHash, createHash('sha256').update(token).digest('base64url'))
      assert.throws(() => {
        ;(v.claims as { sub: string }).sub = 'root'
      }, TypeError)
      assert.throws(() => {
        ;(v.claims.cnf as { jkt: string }).jkt = 'x'
      }, TypeError)
      assert.equal((await verifier.verifyAsync(token)).claims.jti, v.claims.jti)
    })

    test('typ application/at+jwt and an audience array containing ours are accepted', async () => {
      const t = await signToken(k1, claimsAt(ISSUER, now(), { aud: ['other', AUDIENCE] }), { typ: 'application/at+jwt' })
      assert.equal(verifier.verifySync(t).kid, 'k1')
      const upper = await signToken(k1, claimsAt(ISSUER, now()), { typ: 'AT+JWT' })
      assert.equal(verifier.verifySync(upper).kid, 'k1')
    })

    test('alg none is refused, with or without a signature', () => {
      const claims = claimsAt(ISSUER, now())
      for (const alg of ['none', 'None', 'NONE']) {
        assertRefused(verifier, rawSign({ alg, typ: 'at+jwt', kid: 'k1' }, claims, null), ['malformed', 'algorithm'])
        const withSig = `${rawSign({ alg, typ: 'at+jwt', kid: 'k1' }, claims, null)}${Buffer.alloc(64).toString('base64url')}`
        assertRefused(verifier, withSig, ['algorithm'])
      }
      assertRefused(verifier, rawSign({ typ: 'at+jwt', kid: 'k1' }, claims, k1.privateKey), ['algorithm'])
    })

    test('HS256 signed with the public key bytes is refused', () => {
      const claims = claimsAt(ISSUER, now())
      const pem = k1.publicKey.export({ format: 'pem', type: 'spki' })
      const raw = Buffer.from(k1.jwk.x as string, 'base64url')
      for (const secret of [pem, raw, JSON.stringify(k1.jwk), k1.jwk.x as string]) {
        for (const alg of ['HS256', 'HS384', 'HS512']) assertRefused(verifier, hmacSign({ alg, typ: 'at+jwt', kid: 'k1' }, claims, secret), ['algorithm'])
      }
      assert.throws(() => createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwksUrl: jwks.jwksUrl, algorithms: ['HS256' as 'EdDSA'] }), TypeError)
    })

    test('unknown and malicious kids are refused and never used beyond a map lookup', () => {
      const claims = claimsAt(ISSUER, now())
      const before = jwks.requests.length
      for (const kid of [
        'nope',
        '../../../../etc/passwd',
        '..%2f..%2fjwks.json',
        '__proto__',
        'constructor',
        'toString',
        "k1' OR '1'='1",
        'k1\u0000',
        'k1 ',
        'K1',
      ]) {
        assertRefused(verifier, rawSign({ alg: 'EdDSA', typ: 'at+jwt', kid }, claims, k1.privateKey), ['unknown_kid'])
      }
      for (const kid of ['x'.repeat(257), '', 1, null, { $ne: 1 }, ['k1'], true]) {
        assertRefused(verifier, rawSign({ alg: 'EdDSA', typ: 'at+jwt', kid }, claims, k1.privateKey), ['header'])
      }
      assertRefused(verifier, rawSign({ alg: 'EdDSA', typ: 'at+jwt' }, claims, k1.privateKey), ['header'])
      assertRefused(verifier, rawSign({ alg: 'EdDSA', typ: 'at+jwt', kid: 'x'.repeat(9000) }, claims, k1.privateKey), ['too_large'])
      // The cooldown (clock not advanced since the initial load) holds back any refetch.
      assert.equal(jwks.requests.length, before)
      for (const r of jwks.requests) assert.equal(r.path, '/.well-known/jwks.json')
    })

    test('jku, x5u, embedded jwk and x5c headers are refused and nothing is fetched', async () => {
      const claims = claimsAt(ISSUER, now())
      const attacker = ed25519Key('k1')
      const beforeJwks = jwks.requests.length
      const headers: Array<Record<string, unknown>> = [
        { jku: `${decoy.url}/jwks.json` },
        { x5u: `${decoy.url}/cert.pem` },
        { jwk: attacker.jwk },
        { jwk: k1.jwk },
        { x5c: [Buffer.from('not really a cert').toString('base64')] },
      ]
      for (const h of headers) {
        for (const signer of [attacker, k1]) {
          assertRefused(verifier, rawSign({ alg: 'EdDSA', typ: 'at+jwt', kid: 'k1', ...h }, claims, signer.privateKey), ['header'])
          await assert.rejects(verifier.verifyAsync(rawSign({ alg: 'EdDSA', typ: 'at+jwt', kid: 'k1', ...h }, claims, signer.privateKey)), VerifyError)
        }
      }
      // An embedded key without kid, signed by the key it embeds (jose's EmbeddedJWK pattern), is refused too.
      assertRefused(verifier, rawSign({ alg: 'EdDSA', typ: 'at+jwt', jwk: attacker.jwk }, claims, attacker.privateKey), ['header'])
      await new Promise((r) => setTimeout(r, 50))
      assert.equal(decoy.hits(), 0)
      assert.equal(jwks.requests.length, beforeJwks)
    })

    test('wrong or missing typ is refused', async () => {
      const claims = claimsAt(ISSUER, now())
      for (const typ of ['JWT', 'jwt', 'application/jwt', 'at+jwt2', 'dpop+jwt', 'logout+jwt', '']) {
        assertRefused(verifier, await signToken(k1, claims, { typ }), ['type'])
      }
      assertRefused(verifier, rawSign({ alg: 'EdDSA', kid: 'k1' }, claims, k1.privateKey), ['type'])
      assertRefused(verifier, rawSign({ alg: 'EdDSA', kid: 'k1', typ: ['at+jwt'] }, claims, k1.privateKey), ['type'])
    })

    test('any crit header (and b64) is refused', () => {
      const claims = claimsAt(ISSUER, now())
      for (const extra of [{ crit: ['exp'], exp: 1 }, { crit: ['b64'], b64: false }, { crit: [] }, { crit: 'x' }, { b64: false }]) {
        assertRefused(verifier, rawSign({ alg: 'EdDSA', typ: 'at+jwt', kid: 'k1', ...extra }, claims, k1.privateKey), ['header'])
      }
    })

    test('an altered payload or header fails the signature', async () => {
      const token = await signToken(k1, claimsAt(ISSUER, now()))
      const [h, , s] = token.split('.')
      const forged = Buffer.from(JSON.stringify(claimsAt(ISSUER, now(), { sub: 'admin', scope: 'everything' }))).toString('base64url')
      assertRefused(verifier, `${h}.${forged}.${s}`, ['signature'])
      const otherHeader = Buffer.from(JSON.stringify({ alg: 'EdDSA', typ: 'application/at+jwt', kid: 'k1' })).toString('base64url')
      assertRefused(verifier, `${otherHeader}.${token.split('.')[1]}.${s}`, ['signature'])
    })

    test('truncated, padded, non-canonical or zero signatures are refused', async () => {
      const token = await signToken(k1, claimsAt(ISSUER, now()))
      const [h, p, s] = token.split('.') as [string, string, string]
      assertRefused(verifier, `${h}.${p}.${s.slice(0, 84)}`, ['signature'])
      assertRefused(verifier, `${h}.${p}.${s.slice(0, 40)}`, ['signature', 'malformed'])
      assertRefused(verifier, `${h}.${p}.${s}AA`, ['signature', 'malformed'])
      assertRefused(verifier, `${h}.${p}.${s}==`, ['malformed'])
      // Same 64 bytes, different trailing bits in the last character.
      const last = s[s.length - 1] as string
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
      const sibling = alphabet[alphabet.indexOf(last) ^ 1] as string
      assertRefused(verifier, `${h}.${p}.${s.slice(0, -1)}${sibling}`, ['malformed'])
      assertRefused(verifier, `${h}.${p}.${Buffer.alloc(64).toString('base64url')}`, ['signature'])
    })

    test("a token signed with another issuer's keys is refused", async () => {
      const foreign = ed25519Key('k1')
      assertRefused(verifier, await signToken(foreign, claimsAt(ISSUER, now())), ['signature'])
      assertRefused(verifier, await signToken(ed25519Key('foreign-kid'), claimsAt(ISSUER, now())), ['unknown_kid'])
    })

    test('wrong, missing or near-miss issuer is refused', async () => {
      for (const iss of ['https://evil.test', `${ISSUER}/`, ISSUER.toUpperCase(), undefined, 42]) {
        assertRefused(verifier, await signToken(k1, claimsAt(ISSUER, now(), { iss: iss as string })), ['issuer'])
      }
    })

    test('wrong, empty or malformed audience is refused', async () => {
      for (const aud of ['other-gateway', ['a', 'b'], [], [AUDIENCE, 3], 7, undefined, `${AUDIENCE} `]) {
        assertRefused(verifier, await signToken(k1, claimsAt(ISSUER, now(), { aud: aud as string })), ['audience'])
      }
    })

    test('expired tokens are refused past the skew, accepted within it', async () => {
      const t = now()
      assertRefused(verifier, await signToken(k1, claimsAt(ISSUER, t - 700, { exp: t - 31 })), ['expired'])
      assertRefused(verifier, await signToken(k1, claimsAt(ISSUER, t - 700, { exp: t - 30 })), ['expired'])
      assert.ok(verifier.verifySync(await signToken(k1, claimsAt(ISSUER, t - 700, { exp: t - 10 }))))
      for (const exp of [undefined, '9999999999', null, Number.MAX_VALUE * 10]) {
        assertRefused(verifier, rawSign({ alg: 'EdDSA', typ: 'at+jwt', kid: 'k1' }, { ...claimsAt(ISSUER, t), exp }, k1.privateKey), ['claims'])
      }
    })

    test('not-yet-valid tokens (nbf or iat in the future beyond skew) are refused', async () => {
      const t = now()
      assertRefused(verifier, await signToken(k1, claimsAt(ISSUER, t, { nbf: t + 31 })), ['not_yet_valid'])
      assertRefused(verifier, await signToken(k1, claimsAt(ISSUER, t, { iat: t + 120 })), ['not_yet_valid'])
      assert.ok(verifier.verifySync(await signToken(k1, claimsAt(ISSUER, t, { nbf: t + 20, iat: t + 20 }))))
      assertRefused(verifier, rawSign({ alg: 'EdDSA', typ: 'at+jwt', kid: 'k1' }, { ...claimsAt(ISSUER, t), iat: undefined }, k1.privateKey), ['claims'])
      assertRefused(verifier, rawSign({ alg: 'EdDSA', typ: 'at+jwt', kid: 'k1' }, { ...claimsAt(ISSUER, t), nbf: 'soon' }, k1.privateKey), ['claims'])
    })

    test('sub and jti are required strings; Aegis claims must be strings when present', async () => {
      const t = now()
      for (const extra of [
        { sub: undefined },
        { sub: '' },
        { sub: 5 },
        { jti: undefined },
        { jti: 12 },
        { tenant: 1 },
        { scope: ['a'] },
        { capability_hash: {} },
        { cnf: 'x' },
        { cnf: [] },
      ]) {
        assertRefused(verifier, rawSign({ alg: 'EdDSA', typ: 'at+jwt', kid: 'k1' }, { ...claimsAt(ISSUER, t), ...extra }, k1.privateKey), ['claims'])
      }
      let deep: unknown = 'x'
      for (let i = 0; i < 40; i++) deep = [deep]
      assertRefused(verifier, rawSign({ alg: 'EdDSA', typ: 'at+jwt', kid: 'k1' }, { ...claimsAt(ISSUER, t), deep }, k1.privateKey), ['claims'])
    })

    test('oversized tokens are refused before any parsing', async () => {
      const big = await signToken(k1, claimsAt(ISSUER, now(), { padding: 'x'.repeat(9000) }))
      assert.ok(big.length > 8192)
      assertRefused(verifier, big, ['too_large'])
      assertRefused(verifier, 'a'.repeat(8193), ['too_large'])
      assertRefused(verifier, `${'.'.repeat(100_000)}`, ['too_large'])
      const small = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: verifier.jwks, maxTokenBytes: 100, clock })
      assertRefused(small, await signToken(k1, claimsAt(ISSUER, now())), ['too_large'])
      small.close()
      assert.equal(verifier.jwks.loaded, true, 'closing a verifier must not close a shared JWKS client')
    })

    test('garbage segments are refused as malformed', () => {
      const h = Buffer.from(JSON.stringify({ alg: 'EdDSA', typ: 'at+jwt', kid: 'k1' })).toString('base64url')
      const p = Buffer.from(JSON.stringify(claimsAt(ISSUER, now()))).toString('base64url')
      const s = Buffer.alloc(64).toString('base64url')
      const cases = [
        '',
        'abc',
        'a.b',
        'a.b.c.d',
        `${h}.${p}.${s}.`,
        '...',
        '..',
        `${h}..${s}`,
        `.${p}.${s}`,
        `${h}.${p}.`,
        `${h}$.${p}.${s}`,
        `${h}.${p} .${s}`,
        ` ${h}.${p}.${s}`,
        `${h}=.${p}.${s}`,
        `${h}.${p}.${s}\n`,
        `${Buffer.from('not json').toString('base64url')}.${p}.${s}`,
        `${Buffer.from('[1,2]').toString('base64url')}.${p}.${s}`,
        `${Buffer.from('null').toString('base64url')}.${p}.${s}`,
        `${Buffer.from([0xff, 0xfe, 0x7b, 0x7d]).toString('base64url')}.${p}.${s}`,
        `${Buffer.from('\uFEFF{"alg":"EdDSA"}').toString('base64url')}.${p}.${s}`,
      ]
      for (const c of cases) assertRefused(verifier, c, ['malformed'])
      for (const c of [undefined, null, 42, {}, ['a.b.c']]) assertRefused(verifier, c, ['malformed'])
    })

    test('a payload that is not a JSON object is refused even with a good signature', async () => {
      const { sign } = await import('node:crypto')
      const h = Buffer.from(JSON.stringify({ alg: 'EdDSA', typ: 'at+jwt', kid: 'k1' })).toString('base64url')
      for (const body of ['{"iss":', '[1]', '"str"', '']) {
        const p = Buffer.from(body).toString('base64url')
        const input = `${h}.${p}`
        const sig = sign(null, Buffer.from(input), k1.privateKey).toString('base64url')
        assertRefused(verifier, `${input}.${sig}`, ['malformed'])
      }
    })

    test('valid tokens still verify after all the attacks', async () => {
      const token = await signToken(k1, claimsAt(ISSUER, now()))
      assert.equal(verifier.verifySync(token).claims.iss, ISSUER)
      assert.equal((await verifier.verifyAsync(token)).kid, 'k1')
    })
  })

describe('verifier: algorithm pinning with RSA keys', () => {
  let jwks: JwksServer
  let ed: TestKey
  let rs: TestKey
  let ps: TestKey
  let weak: TestKey
  let verifier: Verifier
  let edOnly: Verifier

  before(async () => {
    ed = ed25519Key('ed')
    rs = rsaKey('rs', 'RS256')
    ps = rsaKey('ps', 'PS256')
    weak = rsaKey('weak', 'RS256', 1024)
    jwks = await startJwksServer([ed, rs, ps, weak])
    verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwksUrl: jwks.jwksUrl, algorithms: ['EdDSA', 'RS256', 'PS256'] })
    edOnly = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwksUrl: jwks.jwksUrl })
    await Promise.all([verifier.jwks.ready, edOnly.jwks.ready])
  })
  after(async () => {
    verifier.close()
    edOnly.close()
    await jwks.close()
  })

  test('RS256 and PS256 verify when allowed; keys under 2048 bits are never imported', async () => {
    const t = Math.floor(Date.now() / 1000)
    assert.equal(verifier.verifySync(await signToken(rs, claimsAt(ISSUER, t))).header.alg, 'RS256')
    assert.equal(verifier.verifySync(await signToken(ps, claimsAt(ISSUER, t))).header.alg, 'PS256')
    assert.equal(verifier.verifySync(await signToken(ed, claimsAt(ISSUER, t))).header.alg, 'EdDSA')
    assert.deepEqual(verifier.jwks.kids().sort(), ['ed', 'ps', 'rs'])
    assertRefused(verifier, rawSign({ alg: 'RS256', typ: 'at+jwt', kid: 'weak' }, claimsAt(ISSUER, t), weak.privateKey), ['unknown_kid'])
  })

  test('a header alg other than the key alg never selects the key', async () => {
    const t = Math.floor(Date.now() / 1000)
    const claims = claimsAt(ISSUER, t)
    // RS256 signature presented as PS256 for the RS256 key, and the reverse.
    assertRefused(verifier, rawSign({ alg: 'PS256', typ: 'at+jwt', kid: 'rs' }, claims, rs.privateKey), ['algorithm'])
    assertRefused(verifier, rawSign({ alg: 'RS256', typ: 'at+jwt', kid: 'ps' }, claims, ps.privateKey), ['algorithm'])
    assertRefused(verifier, rawSign({ alg: 'EdDSA', typ: 'at+jwt', kid: 'rs' }, claims, ed.privateKey), ['algorithm'])
    assertRefused(verifier, rawSign({ alg: 'RS256', typ: 'at+jwt', kid: 'ed' }, claims, rs.privateKey), ['algorithm'])
  })

  test('the default verifier accepts EdDSA only and imports no RSA key', async () => {
    const t = Math.floor(Date.now() / 1000)
    assertRefused(edOnly, await signToken(rs, claimsAt(ISSUER, t)), ['algorithm'])
    assert.deepEqual(edOnly.jwks.kids(), ['ed'])
  })
})

describe('verifier: verified-token cache', () => {
  let jwks: JwksServer
  let k1: TestKey
  let k2: TestKey
  const clock = new ManualClock(Date.UTC(2026, 10, 29, 4, 0, 0))
  const now = () => Math.floor(clock.now() / 1000)
  let verifier: Verifier

  before(async () => {
    k1 = ed25519Key('c1')
    k2 = ed25519Key('c2')
    jwks = await startJwksServer([k1, k2])
    verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwksUrl: jwks.jwksUrl, clock })
    await verifier.jwks.ready
  })
  after(async () => {
    verifier.close()
    await jwks.close()
  })

  test('a reused token is answered from the cache (same frozen result)', async () => {
    const token = await signToken(k2, claimsAt(ISSUER, now()))
    const first = verifier.verifySync(token)
    assert.equal(verifier.verifySync(token), first)
    verifier.clearCache()
    assert.notEqual(verifier.verifySync(token), first)
  })

  test('short tokens (keyed by their text) and long ones (keyed by SHA-256) are cached; a changed token never hits', async () => {
    const short = await signToken(k2, claimsAt(ISSUER, now()))
    const long = await signToken(k2, claimsAt(ISSUER, now(), { pad: 'p'.repeat(1200) }))
    assert.ok(short.length <= 1024 && long.length > 1024)
    for (const token of [short, long]) {
      const first = verifier.verifySync(token)
      assert.equal(verifier.verifySync(token), first)
      assert.equal(first.tokenHash, createHash('sha256').update(token).digest('base64url'))
      // The cached token's signature on another payload: verified afresh, and refused.
      const [h, p, s] = token.split('.') as [string, string, string]
      const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>
      const forged = `${h}.${Buffer.from(JSON.stringify({ ...payload, sub: 'root' })).toString('base64url')}.${s}`
      assertRefused(verifier, forged, ['signature'])
      assertRefused(verifier, `${token} `, ['malformed'])
      // Found under the same key (the signature's last characters), the forgery neither hit nor evicted the entry.
      assert.equal(verifier.verifySync(token), first)
    }
  })

  test('a cached token stops verifying once its kid leaves the JWKS', async () => {
    const token = await signToken(k1, claimsAt(ISSUER, now()))
    verifier.verifySync(token)
    assert.ok(verifier.verifySync(token))
    jwks.keys = [k2.jwk]
    await verifier.jwks.refresh()
    assertRefused(verifier, token, ['unknown_kid'])
    // And a key set that puts another key under the same kid voids the entry too.
    const other = await signToken(k2, claimsAt(ISSUER, now()))
    verifier.verifySync(other)
    const impostor = ed25519Key('c2')
    jwks.keys = [impostor.jwk]
    await verifier.jwks.refresh()
    assertRefused(verifier, other, ['signature'])
    jwks.keys = [k1.jwk, k2.jwk]
    await verifier.jwks.refresh()
    assert.ok(verifier.verifySync(token))
  })

  test('an unchanged key set keeps cached entries (same key object across refetches)', async () => {
    const token = await signToken(k1, claimsAt(ISSUER, now()))
    const first = verifier.verifySync(token)
    jwks.keys = [k2.jwk, k1.jwk]
    await verifier.jwks.refresh()
    assert.equal(verifier.verifySync(token), first)
  })

  test('a cached token is never served past its exp, and is refused once expired beyond skew', async () => {
    const start = clock.now()
    const token = await signToken(k1, claimsAt(ISSUER, now(), { exp: now() + 60 }))
    const first = verifier.verifySync(token)
    clock.advance(59_000)
    assert.equal(verifier.verifySync(token), first)
    clock.advance(2_000)
    // Past exp but within skew: verified afresh, not from the cache.
    const second = verifier.verifySync(token)
    assert.notEqual(second, first)
    clock.advance(30_000)
    assertRefused(verifier, token, ['expired'])
    clock.set(start)
  })

  test('the cache is bounded (LRU) and can be disabled', async () => {
    const small = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: verifier.jwks, clock, cacheSize: 2 })
    const tokens = await Promise.all([1, 2, 3].map(() => signToken(k1, claimsAt(ISSUER, now()))))
    const r0 = small.verifySync(tokens[0]!)
    small.verifySync(tokens[1]!)
    small.verifySync(tokens[2]!)
    assert.notEqual(small.verifySync(tokens[0]!), r0)
    const none = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: verifier.jwks, clock, cacheSize: 0 })
    const r = none.verifySync(tokens[1]!)
    assert.notEqual(none.verifySync(tokens[1]!), r)
    small.close()
    none.close()
  })
})
