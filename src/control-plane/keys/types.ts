import type { SigningKey } from '../../store/types.js'

/** The signing side of the key lifecycle (docs/reference.md "Keys"). */
export interface KeyManager {
  /**
   * Signs a compact JWS with the `current` key: header gets `alg: EdDSA`, `kid`
   * and the given fields (`typ`). Synchronous and allocation-light: it is on
   * the issuance hot path.
   */
  signJwt(header: Record<string, unknown>, payload: Record<string, unknown>): { jwt: string; kid: string }
  /**
   * signJwt with the signature computed off the event loop (libuv thread
   * pool), for the token endpoint where many requests are in flight.
   */
  signJwtAsync(header: Record<string, unknown>, payload: Record<string, unknown>): Promise<{ jwt: string; kid: string }>
  /** kid of the current signing key. */
  currentKid(): string
  /** The Ed25519 implementation the current key signs with (`keys.ed25519`). */
  signingBackend(): 'libsodium' | 'node:crypto'
  /** RFC 7517 JWK Set of every published key (next, current, previous). */
  jwks(): { keys: Record<string, unknown>[] }
  /** Strong ETag of the current JWKS body. */
  jwksEtag(): string
  /** Serialized JWKS body (cached until the key set changes). */
  jwksBody(): string
  /** All keys with their states, no private material. */
  list(): Array<Omit<SigningKey, 'encryptedPrivateKey'>>
  /** Scheduled-style rotation now: publishes a `next` key if none, or promotes. */
  rotate(opts: { emergency: boolean; actor: string }): Promise<{ current: string; next: string | null; revoked: string | null }>
  /** Reloads key states from the store (another control plane may have rotated). */
  refresh(): Promise<void>
  /** Starts the scheduler (rotation under the cluster lock) and refresh loop. */
  start(): void
  stop(): Promise<void>
}
