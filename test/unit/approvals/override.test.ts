import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPairSync, sign } from 'node:crypto'
import { SignJWT, base64url } from 'jose'
import { mintOverrideToken, overrideClaims, OVERRIDE_TYP as MINTED_TYP } from '../../../src/control-plane/approvals/override.js'
import { claimOverride, OVERRIDE_TYP, OverrideError, verifyOverride } from '../../../src/gateway/approvals/verify-override.js'
import { localKeySet } from '../../../src/verify/index.js'
import { MemoryReplayCache } from '../../../src/store/memory/replay-cache.js'
import type { Approval } from '../../../src/store/types.js'

const { publicKey, privateKey } = generateKeyPairSync('ed25519')
const jwks = { keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'EdDSA', use: 'sig' }] }
const keys = localKeySet(() => jwks)
const config = { issuer: 'https://aegis.example', audience: 'aegis-gateway', tokens: { overrideTtlSeconds: 300 } } as const
const signer = {
  signJwt(header: Record<string, unknown>, payload: Record<string, unknown>) {
    const h = base64url.encode(JSON.stringify({ alg: 'EdDSA', kid: 'k1', ...header }))
    const p = base64url.encode(JSON.stringify(payload))
    return { jwt: `${h}.${p}.${base64url.encode(sign(null, Buffer.from(`${h}.${p}`), privateKey))}`, kid: 'k1' }
  },
}
const decidedAt = Date.UTC(2026, 10, 29, 4, 0, 0)
const approved: Approval = {
  id: 'apr_abcdefghijkl',
  tenant: 'acme',
  agentId: 'billing-bot',
  tool: 'payments.transfer',
  paramsCanonical: '{"amount":5}',
  paramsHash: 'HASH',
  resource: null,
  requestCanonical: null,
  policyId: 'p',
  policyVersion: 'v7',
  group: 'finance',
  requireConsole: false,
  status: 'approved',
  createdAt: decidedAt - 1000,
  expiresAt: decidedAt + 900_000,
  decidedAt,
  decidedBy: 'admin:x',
  reason: null,
  overrideJti: 'ovr_1',
  deliveries: [],
}
const expected = { agentId: 'billing-bot', tenant: 'acme', tool: 'payments.transfer', paramsHash: 'HASH', policyVersion: 'v7', resource: null }
const base = { keys, issuer: config.issuer, audience: config.audience, expected, now: decidedAt + 1000 }

describe('override tokens', () => {
  test('mint and gateway agree on the typ', () => {
    assert.equal(MINTED_TYP, OVERRIDE_TYP)
  })

  test('claims derive from the stored request only, so a second fetch has the same jti and exp', () => {
    const a = overrideClaims(approved, config)!
    const b = overrideClaims({ ...approved }, config)!
    assert.deepEqual(a, b)
    assert.equal(a.exp - a.iat, 300)
    assert.equal(overrideClaims({ ...approved, status: 'denied' }, config), null)
    assert.equal(mintOverrideToken(signer, config, approved, decidedAt + 301_000), null)
  })

  test('a minted token verifies for exactly its call', async () => {
    const { token } = mintOverrideToken(signer, config, approved, decidedAt)!
    const v = await verifyOverride(token, base)
    assert.deepEqual(v, { jti: 'ovr_1', exp: Math.floor(decidedAt / 1000) + 300, approvalId: approved.id })
    const replay = new MemoryReplayCache({ clock: { now: () => decidedAt } })
    await claimOverride(replay, v)
    await assert.rejects(claimOverride(replay, v), (e: unknown) => e instanceof OverrideError && e.reason === 'replayed')
  })

  const refusedWith = (reason: string) => (e: unknown) => e instanceof OverrideError && e.reason === reason && e.code === 'invalid_token'

  test('header attacks are refused: alg none, jku/jwk/x5u, unknown kid, wrong typ', async () => {
    const claims = overrideClaims(approved, config)!
    const none = `${base64url.encode(JSON.stringify({ alg: 'none', typ: OVERRIDE_TYP, kid: 'k1' }))}.${base64url.encode(JSON.stringify(claims))}.`
    await assert.rejects(verifyOverride(none, base), refusedWith('malformed'))
    for (const extra of [{ jku: 'http://evil/jwks' }, { jwk: { kty: 'OKP' } }, { x5u: 'http://evil' }]) {
      const t = signer.signJwt({ typ: OVERRIDE_TYP, ...extra }, { ...claims }).jwt
      await assert.rejects(verifyOverride(t, base), refusedWith('header'))
    }
    const unknownKid = `${base64url.encode(JSON.stringify({ alg: 'EdDSA', typ: OVERRIDE_TYP, kid: 'k2' }))}.${signer
      .signJwt({ typ: OVERRIDE_TYP }, { ...claims })
      .jwt.split('.')
      .slice(1)
      .join('.')}`
    await assert.rejects(verifyOverride(unknownKid, base), refusedWith('unknown_kid'))
    const atJwt = signer.signJwt({ typ: 'at+jwt' }, { ...claims }).jwt
    await assert.rejects(verifyOverride(atJwt, base), refusedWith('type'))
    const hs = await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'HS256', typ: OVERRIDE_TYP, kid: 'k1' }).sign(new Uint8Array(32))
    await assert.rejects(verifyOverride(hs, base), refusedWith('signature'))
  })

  test('issuer, audience, lifetime and every binding claim are checked', async () => {
    const claims = overrideClaims(approved, config)!
    const tok = (over: Record<string, unknown>) => signer.signJwt({ typ: OVERRIDE_TYP }, { ...claims, ...over }).jwt
    await assert.rejects(verifyOverride(tok({ iss: 'https://other' }), base), refusedWith('claims'))
    await assert.rejects(verifyOverride(tok({ aud: 'crm-tool' }), base), refusedWith('claims'))
    await assert.rejects(verifyOverride(tok({ exp: claims.iat + 7200 }), base), refusedWith('claims'))
    await assert.rejects(verifyOverride(tok({}), { ...base, now: (claims.exp + 31) * 1000 }), refusedWith('expired'))
    for (const k of ['agent_id', 'sub', 'tenant', 'tool', 'params_hash', 'policy_version'] as const) {
      await assert.rejects(verifyOverride(tok({ [k]: 'other' }), base), refusedWith('binding'), k)
    }
    await assert.rejects(verifyOverride(tok({ resource: 'db:prod' }), base), refusedWith('binding'))
    await assert.rejects(verifyOverride('x'.repeat(9000), base), refusedWith('too_large'))
  })

  test('each refusal keeps the reason and message the gateway answers with', async () => {
    const claims = overrideClaims(approved, config)!
    const refused = async (token: string, opts = base): Promise<[string, string]> => {
      try {
        await verifyOverride(token, opts)
      } catch (e) {
        assert.ok(e instanceof OverrideError)
        return [e.reason, e.message]
      }
      return ['accepted', '']
    }
    const tok = (header: Record<string, unknown>, over: Record<string, unknown> = {}) =>
      signer.signJwt({ typ: OVERRIDE_TYP, ...header }, { ...claims, ...over }).jwt
    const noKid = (() => {
      const [, p] = tok({}).split('.')
      const h = base64url.encode(JSON.stringify({ alg: 'EdDSA', typ: OVERRIDE_TYP }))
      return `${h}.${p}.${base64url.encode(sign(null, Buffer.from(`${h}.${p}`), privateKey))}`
    })()
    assert.deepEqual(await refused(''), ['malformed', 'override token missing'])
    assert.deepEqual(await refused('x'.repeat(9000)), ['too_large', 'override token too large'])
    assert.deepEqual(await refused('a.b'), ['malformed', 'override token malformed'])
    assert.deepEqual(await refused(tok({ typ: 'at+jwt' })), ['type', 'not an override token'])
    assert.deepEqual(await refused(tok({ jku: 'http://evil/jwks' })), ['header', 'override token header not accepted'])
    assert.deepEqual(await refused(noKid), ['header', 'override token has no key id'])
    assert.deepEqual(await refused(tok({ kid: 'k2' })), ['unknown_kid', 'override token signed by an unknown key'])
    assert.deepEqual(await refused(tok({ alg: 'RS256' })), ['signature', 'override token algorithm not accepted'])
    const good = tok({})
    assert.deepEqual(await refused(good.slice(0, good.lastIndexOf('.') + 1) + 'A'.repeat(86)), ['signature', 'override token signature invalid'])
    assert.deepEqual(await refused(tok({}, { aud: 'crm-tool' })), ['claims', 'override token claims not accepted'])
    assert.deepEqual(await refused(tok({}, { jti: undefined })), ['claims', 'override token claims not accepted'])
    assert.deepEqual(await refused(tok({}, { approval_id: undefined })), ['claims', 'override token has no approval_id'])
    assert.deepEqual(await refused(tok({}, { exp: claims.iat + 7200 })), ['claims', 'override token lifetime not accepted'])
    assert.deepEqual(await refused(good, { ...base, now: (claims.exp + 31) * 1000 }), ['expired', 'override token expired'])
    assert.deepEqual(await refused(tok({}, { tool: 'other' })), ['binding', 'override token was approved for a different call'])
    assert.deepEqual(await refused(good), ['accepted', ''])
  })

  test('an unreachable replay cache fails closed', async () => {
    const broken = {
      claim: async () => {
        throw new Error('down')
      },
      close: async () => {},
    }
    await assert.rejects(claimOverride(broken, { jti: 'j', exp: 1, approvalId: 'a' }), refusedWith('unavailable'))
  })
})
