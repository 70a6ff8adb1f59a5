import { createHash, timingSafeEqual } from 'node:crypto'

/** base64url(SHA-256(input)). */
export function sha256b64url(input: string | Uint8Array): string {
  return createHash('sha256').update(input).digest('base64url')
}

/**
 * Constant-time comparison of two strings. Both sides are hashed first so
 * that neither the content nor the length of the secret leaks through timing.
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest()
  const hb = createHash('sha256').update(b).digest()
  return timingSafeEqual(ha, hb)
}
