import { randomBytes } from 'node:crypto'

/** A random identifier with a readable prefix: `prefix_` + base64url of `bytes` random bytes. */
export function randomId(prefix: string, bytes = 16): string {
  return `${prefix}_${randomBytes(bytes).toString('base64url')}`
}

/** A secret with 256 bits of randomness, base64url encoded. */
export function randomSecret(bytes = 32): string {
  return randomBytes(bytes).toString('base64url')
}
