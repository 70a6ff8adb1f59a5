/**
 * Delegation token sources (RFC 8693 with an `actor_token`, docs/delegation.md):
 * a token for an agent acting on behalf of a person, or for a sub-agent an
 * agent hands narrowed work to. Each refresh exchanges the current subject
 * and actor tokens again (their own sources keep them fresh), so a
 * delegated token refreshes like any other and never outlives either.
 */
import { AegisSdkError } from './errors.js'
import { OAuthTokenSource, type OAuthTokenSourceOptions, type TokenRequest, type TokenSource } from './token-source.js'

/** RFC 8693 token types. */
export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token'
export const TOKEN_TYPE_ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token'

/** A token, a function returning the current one, or a source of them. */
export type TokenInput = string | (() => string | Promise<string>) | TokenSource

/** Options of {@link DelegationSource}. */
export interface DelegationSourceOptions extends OAuthTokenSourceOptions {
  /** The delegating party's token: an agent's Aegis access token (or one already delegated), or a person's token from a trusted issuer. */
  subject: TokenInput
  /** `subject_token_type`. Default `urn:ietf:params:oauth:token-type:access_token`. */
  subjectTokenType?: string
  /** The acting agent's own Aegis access token (its client's token source). */
  actor: TokenInput
  /** Tools the delegated token may call (the `capabilities` parameter): a subset of what every party holds; default all of that. */
  capabilities?: readonly string[]
  /** Asked lifetime in seconds (the `ttl` parameter); the server caps it, and never past the subject's or actor's expiry. */
  ttlSeconds?: number
}

async function current(input: TokenInput, what: string): Promise<string> {
  const t = typeof input === 'string' ? input : typeof input === 'function' ? await input() : await input.getToken()
  if (typeof t !== 'string' || t.length === 0) throw new AegisSdkError('invalid_request', `${what} provider returned no token`)
  return t
}

/**
 * Token exchange with an actor: the token names the subject (`sub`) and the
 * actor (`act`), with scopes and tools no wider than both.
 *
 * @example
 * const forWorker = new DelegationSource({ issuer, subject: planner.tokenSource, actor: worker.tokenSource, capabilities: ['crm.read'] })
 */
export class DelegationSource extends OAuthTokenSource {
  readonly #subject: TokenInput
  readonly #subjectType: string
  readonly #actor: TokenInput
  readonly #capabilities: string | undefined
  readonly #ttl: number | undefined

  constructor(options: DelegationSourceOptions) {
    super(options)
    if (options.subject === undefined || options.subject === '') throw new TypeError('subject is required')
    if (options.actor === undefined || options.actor === '') throw new TypeError('actor is required')
    if (options.ttlSeconds !== undefined && !(Number.isInteger(options.ttlSeconds) && options.ttlSeconds > 0 && options.ttlSeconds <= 86_400))
      throw new RangeError('ttlSeconds must be a whole number of seconds from 1 to 86400')
    this.#subject = options.subject
    this.#subjectType = options.subjectTokenType ?? TOKEN_TYPE_ACCESS_TOKEN
    this.#actor = options.actor
    this.#capabilities = options.capabilities && options.capabilities.length > 0 ? [...new Set(options.capabilities)].join(' ') : undefined
    this.#ttl = options.ttlSeconds
  }

  protected async tokenRequest(): Promise<TokenRequest> {
    const [subject, actor] = await Promise.all([current(this.#subject, 'subject'), current(this.#actor, 'actor')])
    const params = new URLSearchParams({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: subject,
      subject_token_type: this.#subjectType,
      actor_token: actor,
      actor_token_type: TOKEN_TYPE_ACCESS_TOKEN,
    })
    if (this.#capabilities !== undefined) params.set('capabilities', this.#capabilities)
    if (this.#ttl !== undefined) params.set('ttl', String(this.#ttl))
    return { params, headers: {} }
  }
}
