/**
 * `client_credentials` with private_key_jwt client authentication (RFC 7523
 * §2.2): a short-lived assertion signed with the agent's private key, a new
 * `jti` for every request. The matching public key is registered as the
 * agent's `jwks`.
 */
import { randomUUID, type KeyObject } from 'node:crypto'
import { OAuthTokenSource, type OAuthTokenSourceOptions, type TokenRequest } from '../token-source.js'
import { defaultAlg, signJws, toPrivateKey, type PrivateKeyInput, type SigningAlg } from './jws.js'

/** Options of {@link PrivateKeyJwtSource}. */
export interface PrivateKeyJwtSourceOptions extends OAuthTokenSourceOptions {
  /** The agent's client id (`ag_…`). */
  clientId: string
  /** The private key (KeyObject, PEM or private JWK). Never logged. */
  privateKey: PrivateKeyInput
  /** `kid` of the registered public key, when the agent's JWKS has several. */
  kid?: string
  /** Default from the key: EdDSA, ES256 or PS256. */
  alg?: SigningAlg
  /** The assertion's `aud`; default the issuer (Aegis also accepts its token endpoint URL). */
  assertionAudience?: string
  /** Assertion lifetime, seconds (at most 300). Default 60. */
  assertionLifetimeSeconds?: number
}

/** Token source authenticating with a signed client assertion. */
export class PrivateKeyJwtSource extends OAuthTokenSource {
  readonly #clientId: string
  readonly #key: KeyObject
  readonly #alg: SigningAlg
  readonly #kid: string | undefined
  readonly #aud: string
  readonly #lifetime: number

  constructor(options: PrivateKeyJwtSourceOptions) {
    super(options)
    if (typeof options.clientId !== 'string' || options.clientId.length === 0) throw new TypeError('clientId is required')
    this.#clientId = options.clientId
    this.#key = toPrivateKey(options.privateKey)
    this.#alg = options.alg ?? defaultAlg(this.#key)
    this.#kid = options.kid
    this.#aud = options.assertionAudience ?? options.issuer
    this.#lifetime = Math.min(300, Math.max(5, options.assertionLifetimeSeconds ?? 60))
  }

  /** A fresh client assertion. */
  assertion(nowSeconds = Math.floor(Date.now() / 1000)): string {
    return signJws(
      { typ: 'JWT', ...(this.#kid ? { kid: this.#kid } : {}) },
      { iss: this.#clientId, sub: this.#clientId, aud: this.#aud, jti: randomUUID(), iat: nowSeconds, exp: nowSeconds + this.#lifetime },
      this.#key,
      this.#alg,
    )
  }

  protected async tokenRequest(): Promise<TokenRequest> {
    const params = new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: this.#clientId,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: this.assertion(),
    })
    return { params, headers: {} }
  }
}
