/** Workload identity tokens for {@link TokenExchangeSource} (RFC 8693). */
import { readFile } from 'node:fs/promises'

/**
 * A subject-token provider that re-reads a file on every exchange, as a
 * Kubernetes projected service-account token
 * (`/var/run/secrets/tokens/aegis`) or a SPIFFE JWT-SVID file rotates.
 */
export function subjectTokenFile(path: string): () => Promise<string> {
  return async () => {
    const t = (await readFile(path, 'utf8')).trim()
    if (t.length === 0 || t.length > 16_384) throw new Error(`subject token file ${path} is empty or too large`)
    return t
  }
}
