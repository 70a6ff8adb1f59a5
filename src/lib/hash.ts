import * as nodeCrypto from 'node:crypto'
import { createHash, timingSafeEqual } from 'node:crypto'

type OneShotHash = (algorithm: string, data: string | Uint8Array, encoding: 'base64url' | 'buffer') => string | Buffer
/** Node ≥ 20.12's one-shot `crypto.hash` (no Hash object per call: about half the cost on the hot paths); createHash on older 20.x. */
const oneShot = (nodeCrypto as { hash?: OneShotHash }).hash

/** base64url(SHA-256(input)). */
export const sha256b64url: (input: string | Uint8Array) => string =
  typeof oneShot === 'function' ? (input) => oneShot('sha256', input, 'base64url') as string : (input) => createHash('sha256').update(input).digest('base64url')

/** SHA-256(input), the 32 bytes. */
export const sha256: (input: string | Uint8Array) => Buffer =
  typeof oneShot === 'function' ? (input) => oneShot('sha256', input, 'buffer') as Buffer : (input) => createHash('sha256').update(input).digest()

/**
 * Constant-time comparison of two strings. Both sides are hashed first so
 * that neither the content nor the length of the secret leaks through timing.
 */
export function constantTimeEqual(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b))
}
