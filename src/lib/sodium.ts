import { createRequire } from 'node:module'

/** The parts of `sodium-native` Aegis uses: Ed25519 sign and verify, and guarded memory for secret keys. */
export interface SodiumBinding {
  crypto_sign_verify_detached(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean
  crypto_sign_detached(signature: Uint8Array, message: Uint8Array, secretKey: Uint8Array): void
  crypto_sign_seed_keypair(publicKey: Uint8Array, secretKey: Uint8Array, seed: Uint8Array): void
  sodium_malloc(size: number): Buffer
  sodium_memzero(buf: Uint8Array): void
}

let sodium: SodiumBinding | null | undefined

/**
 * libsodium through `sodium-native` (prebuilt), or null where its addon does
 * not load: every caller then falls back to node:crypto and nothing else
 * changes. Loaded once, on first use.
 */
export function sodiumBinding(): SodiumBinding | null {
  if (sodium === undefined) {
    try {
      const binding = createRequire(import.meta.url)('sodium-native') as Partial<SodiumBinding>
      const complete =
        typeof binding.crypto_sign_verify_detached === 'function' &&
        typeof binding.crypto_sign_detached === 'function' &&
        typeof binding.crypto_sign_seed_keypair === 'function' &&
        typeof binding.sodium_malloc === 'function' &&
        typeof binding.sodium_memzero === 'function'
      sodium = complete ? (binding as SodiumBinding) : null
    } catch {
      sodium = null
    }
  }
  return sodium
}
