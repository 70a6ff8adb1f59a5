/**
 * Compact JWS signing with node:crypto for the SDK's client assertions and
 * DPoP proofs. Hand-written because the SDK imports no dependency (only Node
 * built-ins); signing is the easy half of JOSE and the server verifies with jose.
 */
import { createPrivateKey, createPublicKey, sign, type JsonWebKey, type KeyObject } from 'node:crypto'

/** Signing algorithms the SDK produces. */
export type SigningAlg = 'EdDSA' | 'ES256' | 'RS256' | 'PS256'

/** A private key: a KeyObject, a PEM string, or a private JWK. */
export type PrivateKeyInput = KeyObject | string | JsonWebKey

/** A private KeyObject from any accepted input. */
export function toPrivateKey(input: PrivateKeyInput): KeyObject {
  if (typeof input === 'string') return createPrivateKey(input)
  if ('type' in input && (input as KeyObject).type === 'private') return input as KeyObject
  return createPrivateKey({ key: input as JsonWebKey, format: 'jwk' })
}

/** The algorithm a key signs with by default (Ed25519 → EdDSA, P-256 → ES256, RSA → PS256). */
export function defaultAlg(key: KeyObject): SigningAlg {
  switch (key.asymmetricKeyType) {
    case 'ed25519':
      return 'EdDSA'
    case 'ec':
      if (key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new TypeError('only P-256 EC keys are supported (ES256)')
      return 'ES256'
    case 'rsa':
      return 'PS256'
    default:
      throw new TypeError(`unsupported key type ${String(key.asymmetricKeyType)}`)
  }
}

/** The public JWK of a private key (no private members). */
export function publicJwk(key: KeyObject): JsonWebKey {
  const jwk = createPublicKey(key).export({ format: 'jwk' })
  const out: JsonWebKey = { kty: jwk.kty }
  for (const m of ['crv', 'x', 'y', 'n', 'e'] as const) if (jwk[m] !== undefined) out[m] = jwk[m]
  return out
}

function b64(v: unknown): string {
  return Buffer.from(JSON.stringify(v)).toString('base64url')
}

/** `header.payload.signature`, base64url, with `alg` set in the header. */
export function signJws(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject, alg: SigningAlg): string {
  const input = `${b64({ ...header, alg })}.${b64(payload)}`
  const data = Buffer.from(input)
  let sig: Buffer
  switch (alg) {
    case 'EdDSA':
      sig = sign(null, data, key)
      break
    case 'ES256':
      sig = sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' })
      break
    case 'RS256':
      sig = sign('sha256', data, key)
      break
    case 'PS256':
      sig = sign('sha256', data, { key, padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: 32 })
      break
  }
  return `${input}.${sig.toString('base64url')}`
}
