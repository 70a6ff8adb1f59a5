import canonicalizeImpl from 'canonicalize'
import { sha256b64url } from './hash.js'

/** RFC 8785 (JCS) canonical JSON text of a JSON value. Throws on values JSON cannot hold. */
export function canonicalJson(value: unknown): string {
  const text = (canonicalizeImpl as unknown as (v: unknown) => string | undefined)(value)
  if (text === undefined) throw new TypeError('value has no JSON representation')
  return text
}

/** base64url(SHA-256(RFC 8785 canonical JSON)). */
export function canonicalHash(value: unknown): string {
  return sha256b64url(canonicalJson(value))
}
