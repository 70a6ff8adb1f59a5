import { createPublicKey, type JsonWebKey } from 'node:crypto'
import type { VerificationKey, VerifyAlgorithm } from './jwks-client.js'

const MAX_KID_LENGTH = 256
const MIN_RSA_BITS = 2048

type JwkRecord = Record<string, unknown>

function isRecord(v: unknown): v is JwkRecord {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Keys imported from one JWK Set, by `kid`, with the fingerprint of each (to keep unchanged keys across reloads). */
export interface ImportedKeySet {
  readonly keys: ReadonlyMap<string, VerificationKey>
  readonly fingerprints: ReadonlyMap<string, string>
}

/** A JSON-comparable fingerprint of the members that define a public key. */
function fingerprint(jwk: JwkRecord): string {
  return JSON.stringify([jwk.kty, jwk.crv, jwk.x, jwk.n, jwk.e, jwk.alg])
}

/**
 * Imports the usable verification keys of a JWK Set (RFC 7517 §5): keys
 * with `use` `sig` (or absent), no private members, a `kid`, and an `alg`
 * among `algorithms` matching the key type (OKP/Ed25519 for EdDSA, RSA ≥
 * 2048 bits for RS256/PS256). Keys sharing a `kid` are all dropped, since
 * which one a token means would be ambiguous. A key unchanged since
 * `previous` is kept as the same object, so results cached against it stay
 * valid. Throws when `doc` is not a JWK Set or has more than `maxKeys` keys.
 */
export function importJwkSet(doc: unknown, algorithms: ReadonlySet<string>, maxKeys: number, previous?: ImportedKeySet): ImportedKeySet {
  if (!isRecord(doc) || !Array.isArray(doc.keys)) throw new Error('JWKS has no keys array')
  if (doc.keys.length > maxKeys) throw new Error('JWKS has too many keys')
  const keys = new Map<string, VerificationKey>()
  const fingerprints = new Map<string, string>()
  const duplicated = new Set<string>()
  for (const jwk of doc.keys) {
    if (!isRecord(jwk) || typeof jwk.kid !== 'string') continue
    if (keys.has(jwk.kid) || duplicated.has(jwk.kid)) {
      keys.delete(jwk.kid)
      fingerprints.delete(jwk.kid)
      duplicated.add(jwk.kid)
      continue
    }
    const fp = fingerprint(jwk)
    const kept = previous?.keys.get(jwk.kid)
    const imported = kept !== undefined && previous?.fingerprints.get(jwk.kid) === fp ? kept : importKey(jwk, algorithms)
    if (imported === undefined) continue
    keys.set(jwk.kid, imported)
    fingerprints.set(jwk.kid, fp)
  }
  return { keys, fingerprints }
}

function importKey(jwk: JwkRecord, algorithms: ReadonlySet<string>): VerificationKey | undefined {
  const kid = jwk.kid
  const alg = jwk.alg
  if (typeof kid !== 'string' || kid.length === 0 || kid.length > MAX_KID_LENGTH) return undefined
  if (typeof alg !== 'string' || !algorithms.has(alg)) return undefined
  if (jwk.use !== undefined && jwk.use !== 'sig') return undefined
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) return undefined
  // A published private key is a misconfiguration; refuse rather than derive its public half.
  for (const priv of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']) if (jwk[priv] !== undefined) return undefined
  try {
    if (alg === 'EdDSA') {
      if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') return undefined
      const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x } as JsonWebKey, format: 'jwk' })
      if (key.asymmetricKeyType !== 'ed25519') return undefined
      const raw = Buffer.from(key.export({ format: 'jwk' }).x ?? '', 'base64url')
      if (raw.length !== 32) return undefined
      return Object.freeze({ kid, alg, key, raw, signatureBytes: 64 })
    }
    if (jwk.kty !== 'RSA' || typeof jwk.n !== 'string' || typeof jwk.e !== 'string') return undefined
    const key = createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e } as JsonWebKey, format: 'jwk' })
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
    if (key.asymmetricKeyType !== 'rsa' || bits < MIN_RSA_BITS) return undefined
    return Object.freeze({ kid, alg: alg as VerifyAlgorithm, key, raw: Buffer.alloc(0), signatureBytes: Math.ceil(bits / 8) })
  } catch {
    return undefined
  }
}

const EMPTY: ImportedKeySet = { keys: new Map(), fingerprints: new Map() }

/**
 * A {@link KeySource} over a JWK Set the process already holds: an issuer
 * verifying its own tokens, or a tool server with pinned keys. `read` is
 * called at every key lookup and the set is imported again only when it
 * returns another object (so return the same object while the set is
 * unchanged); a set that cannot be imported holds no keys (fail closed).
 * Imports the keys of `algorithms` (default `['EdDSA']`) as {@link JwksClient} does.
 */
export function localKeySet(read: () => unknown, options: { algorithms?: VerifyAlgorithm[]; maxKeys?: number } = {}): KeySource {
  const algorithms = new Set<string>(options.algorithms ?? ['EdDSA'])
  const maxKeys = options.maxKeys ?? 100
  let source: unknown
  let imported = EMPTY
  const current = (): ImportedKeySet => {
    const doc = read()
    if (doc !== source) {
      source = doc
      try {
        imported = importJwkSet(doc, algorithms, maxKeys, imported)
      } catch {
        imported = EMPTY
      }
    }
    return imported
  }
  return {
    getKey: (kid) => current().keys.get(kid),
    get loaded() {
      return true
    },
    // Nothing to fetch: the next lookup reads the set again anyway.
    refreshOnMiss: () => Promise.resolve(),
  }
}

/**
 * Where a verifier looks keys up. {@link JwksClient} is one (fetched from a
 * JWKS URL); {@link localKeySet} is another (a set the process holds).
 */
export interface KeySource {
  /**
   * The key for `kid`, pinned to its algorithm, or undefined. Never fetches,
   * never throws. Returns the same object while the key is unchanged: a
   * verifier's cached result stays valid only while its key object does.
   */
  getKey(kid: string): VerificationKey | undefined
  /** False until keys were loaded once (a miss then means "not yet", not "unknown kid"). */
  readonly loaded: boolean
  /** After a miss: fetch again if the source can (rate-limited by it). Never rejects. */
  refreshOnMiss(): Promise<void>
}
