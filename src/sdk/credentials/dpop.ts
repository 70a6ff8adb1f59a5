/**
 * DPoP (RFC 9449) on the agent side: a key pair that signs a fresh proof for
 * every request, and a `fetch` wrapper that adds them. Token requests get a
 * proof, so the token comes back bound to the key (`token_type: "DPoP"`);
 * requests carrying `Authorization: Bearer <token>` are sent as
 * `Authorization: DPoP <token>` with a proof holding the token's hash (`ath`).
 * A `use_dpop_nonce` answer is retried once with the server's `DPoP-Nonce`.
 */
import { createHash, generateKeyPairSync, randomUUID, type JsonWebKey, type KeyObject } from 'node:crypto'
import type { FetchLike } from '../runtime.js'
import { defaultAlg, publicJwk, signJws, toPrivateKey, type PrivateKeyInput, type SigningAlg } from './jws.js'

export interface DpopProofOptions {
  /** The access token the request carries (adds `ath`). */
  accessToken?: string
  /** A server-provided nonce. */
  nonce?: string
  /** Epoch seconds; default now. */
  iat?: number
}

/** A DPoP key pair. Keep one per agent process; the private key never leaves it. */
export class DpopKey {
  readonly alg: SigningAlg
  readonly publicJwk: JsonWebKey
  readonly #key: KeyObject
  readonly #nonces = new Map<string, string>()

  private constructor(key: KeyObject, alg?: SigningAlg) {
    this.#key = key
    this.alg = alg ?? defaultAlg(key)
    this.publicJwk = publicJwk(key)
  }

  /** A fresh key pair: `ES256` (P-256, default) or `EdDSA` (Ed25519). */
  static generate(alg: 'ES256' | 'EdDSA' = 'ES256'): DpopKey {
    const { privateKey } = alg === 'EdDSA' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' })
    return new DpopKey(privateKey, alg)
  }

  /** Wraps an existing private key (KeyObject, PEM or private JWK). */
  static fromPrivateKey(key: PrivateKeyInput, alg?: SigningAlg): DpopKey {
    return new DpopKey(toPrivateKey(key), alg)
  }

  /** A proof for one request (§4.2): `htu` without query and fragment. */
  proof(method: string, url: string, o: DpopProofOptions = {}): string {
    const u = new URL(url)
    const payload: Record<string, unknown> = {
      jti: randomUUID(),
      htm: method.toUpperCase(),
      htu: `${u.protocol}//${u.host}${u.pathname}`,
      iat: o.iat ?? Math.floor(Date.now() / 1000),
    }
    if (o.accessToken !== undefined) payload.ath = createHash('sha256').update(o.accessToken, 'ascii').digest('base64url')
    const nonce = o.nonce ?? this.#nonces.get(u.origin)
    if (nonce !== undefined) payload.nonce = nonce
    return signJws({ typ: 'dpop+jwt', jwk: this.publicJwk }, payload, this.#key, this.alg)
  }

  /**
   * A `fetch` that adds proofs (see the module comment). Pass it as the
   * `fetch` option of a token source and of `AegisClient`.
   */
  fetch(base: FetchLike = (input, init) => fetch(input, init)): FetchLike {
    const f: FetchLike = async (input, init) => {
      const req = input instanceof Request ? input : undefined
      const url = req ? req.url : input.toString()
      const method = (init?.method ?? req?.method ?? 'GET').toUpperCase()
      const origin = new URL(url).origin
      const send = async (): Promise<Response> => {
        const headers = new Headers(init?.headers ?? req?.headers)
        const auth = headers.get('authorization')
        let token: string | undefined
        if (auth && /^(bearer|dpop) /i.test(auth)) {
          token = auth.slice(auth.indexOf(' ') + 1).trim()
          headers.set('authorization', `DPoP ${token}`)
        }
        headers.set('dpop', this.proof(method, url, token !== undefined ? { accessToken: token } : {}))
        const res = await base(input, { ...init, method, headers })
        const nonce = res.headers.get('dpop-nonce')
        if (nonce !== null && nonce.length > 0 && nonce.length <= 256) this.#nonces.set(origin, nonce)
        return res
      }
      const first = await send()
      if (!(await wantsNonce(first)) || isStream(init?.body)) return first
      await first.body?.cancel().catch(() => {})
      return send()
    }
    // Token sources accept token_type DPoP only through a fetch that holds the key.
    Object.defineProperty(f, 'aegisDpop', { value: true })
    return f
  }
}

async function wantsNonce(res: Response): Promise<boolean> {
  if (!res.headers.has('dpop-nonce')) return false
  if (res.status === 401) return /error\s*=\s*"?use_dpop_nonce/i.test(res.headers.get('www-authenticate') ?? '')
  if (res.status !== 400) return false
  try {
    const body = (await res.clone().json()) as { error?: unknown }
    return body.error === 'use_dpop_nonce'
  } catch {
    return false
  }
}

function isStream(body: unknown): boolean {
  return body !== null && typeof body === 'object' && (typeof (body as ReadableStream).getReader === 'function' || Symbol.asyncIterator in (body as object))
}
