/**
 * Micro-benchmark of `aegis/verify` (issue 3 goals: a token not seen before
 * at ≥ 80 % of the raw node:crypto Ed25519 verify rate; a reused token at
 * ≥ 10× it). Keys are made here, the JWKS is served by a real loopback server.
 */
import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createVerifier } from '../src/verify/index.js'
import { b64, opsPerSec } from './util.js'

const ISSUER = 'https://aegis.bench'
const AUDIENCE = 'aegis-gateway'

/**
 * Measures, for `seconds` each: raw `crypto.verify` of an Ed25519 access
 * token's signing input; the verifier with a new token every call (full
 * parse, signature, claims, cache insert); and the verifier with one reused
 * token (cache hit). Returns operations per second.
 */
export async function benchVerify(
  seconds: number,
  ed25519: 'auto' | 'node:crypto' = 'auto',
): Promise<{ rawVerifyPerSec: number; verifierColdPerSec: number; verifierCachedPerSec: number; backend: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const kid = 'bench-1'
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'EdDSA', use: 'sig' }
  const body = JSON.stringify({ keys: [jwk] })
  const server = createServer((_req, res) => {
    res.setHeader('content-type', 'application/jwk-set+json')
    res.setHeader('cache-control', 'public, max-age=300')
    res.end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json`, ed25519 })
  try {
    await verifier.jwks.ready
    const header = b64({ alg: 'EdDSA', typ: 'at+jwt', kid })
    const now = Math.floor(Date.now() / 1000)
    const mint = (): string => {
      const payload = b64({
        iss: ISSUER,
        sub: 'billing-bot',
        agent_id: 'billing-bot',
        client_id: 'cl_bench',
        tenant: 'acme',
        aud: AUDIENCE,
        scope: 'payments:write crm:read',
        iat: now,
        nbf: now,
        exp: now + 600,
        jti: randomBytes(16).toString('base64url'),
        policy_version: '2026-11-28.1',
        capability_hash: randomBytes(32).toString('base64url'),
      })
      const input = `${header}.${payload}`
      return `${input}.${sign(null, Buffer.from(input), privateKey).toString('base64url')}`
    }

    // Calibrate, then make enough distinct tokens that none is verified twice.
    const sample = mint()
    const sampleKey = verifier.jwks.getKey(kid)!.key
    const split = (t: string): [Buffer, Buffer] => [Buffer.from(t.slice(0, t.lastIndexOf('.'))), Buffer.from(t.slice(t.lastIndexOf('.') + 1), 'base64url')]
    const [sIn, sSig] = split(sample)
    const estimate = opsPerSec(0.2, () => verify(null, sIn, sampleKey, sSig))
    const pool = Array.from({ length: Math.ceil(estimate * seconds * 1.5) + 512 }, mint)
    const parts = pool.map(split)
    verifier.verifySync(mint())

    // Raw and cold runs alternate in small rounds over the same tokens, so load from other
    // processes on the machine falls on both alike; the raw side gets pre-split buffers.
    let rawMs = 0
    let coldMs = 0
    let n = 0
    const ROUND = 256
    while (n + ROUND <= pool.length && rawMs + coldMs < seconds * 2000) {
      let t0 = performance.now()
      for (let i = n; i < n + ROUND; i++) {
        const [input, sig] = parts[i]!
        if (!verify(null, input, sampleKey, sig)) throw new Error('raw verify failed')
      }
      rawMs += performance.now() - t0
      t0 = performance.now()
      for (let i = n; i < n + ROUND; i++) verifier.verifySync(pool[i]!)
      coldMs += performance.now() - t0
      n += ROUND
    }
    const rawVerifyPerSec = n / (rawMs / 1000)
    const verifierColdPerSec = n / (coldMs / 1000)

    verifier.verifySync(sample)
    const verifierCachedPerSec = opsPerSec(seconds, () => {
      verifier.verifySync(sample)
    })
    return { rawVerifyPerSec, verifierColdPerSec, verifierCachedPerSec, backend: verifier.ed25519Backend }
  } finally {
    verifier.close()
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

// `node --import tsx bench/verify.ts [seconds]` runs it alone.
if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchVerify(Number(process.argv[2] ?? 2), process.argv[3] === 'node:crypto' ? 'node:crypto' : 'auto')
  const pct = (x: number): string => `${((x / r.rawVerifyPerSec) * 100).toFixed(0)} %`
  console.log(`raw node:crypto Ed25519 verify: ${r.rawVerifyPerSec.toFixed(0)}/s`)
  console.log(`verifier (${r.backend}), new token each call: ${r.verifierColdPerSec.toFixed(0)}/s (${pct(r.verifierColdPerSec)} of raw)`)
  console.log(`verifier, reused token (cache): ${r.verifierCachedPerSec.toFixed(0)}/s (${(r.verifierCachedPerSec / r.rawVerifyPerSec).toFixed(1)}x raw)`)
}
