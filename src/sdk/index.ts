/**
 * `aegis/sdk`: the agent side of Aegis.
 *
 * ```ts
 * import { AegisClient } from 'aegis/sdk'
 * const client = new AegisClient({ issuer, clientId, clientSecret, gatewayUrl })
 * const decision = await client.authorize({ tool: 'crm.read', params: { id: '42' } }, { waitForApproval: true })
 * ```
 *
 * Imports nothing from the server: only Node built-ins (global `fetch`,
 * timers). Never writes to the console; tokens and secrets never appear in
 * errors or in {@link RefreshInfo}.
 *
 * @packageDocumentation
 */
export {
  AegisClient,
  type AegisClientOptions,
  type ActOnBehalfOfOptions,
  type DelegateOptions,
  type AuthorizeAction,
  type AuthorizeOptions,
  type AuthorizeResult,
  type ApprovalRef,
  type ApprovalStatus,
  type Decision,
  type Obligation,
} from './client.js'
export {
  OAuthTokenSource,
  ClientCredentialsSource,
  TokenExchangeSource,
  TOKEN_TYPE_JWT,
  wellKnownUrl,
  type AccessToken,
  type ClientAuthMethod,
  type ClientCredentialsSourceOptions,
  type GetTokenOptions,
  type OAuthTokenSourceOptions,
  type RefreshInfo,
  type RetryOptions,
  type TokenExchangeSourceOptions,
  type TokenRequest,
  type TokenSource,
} from './token-source.js'
export {
  DelegationSource,
  TOKEN_TYPE_ACCESS_TOKEN,
  TOKEN_TYPE_ID_TOKEN,
  type DelegationSourceOptions,
  type TokenInput,
} from './delegation.js'
export { AegisSdkError, AegisAuthError, AegisUnavailableError } from './errors.js'
export {
  systemClock,
  systemScheduler,
  type FetchLike,
  type Scheduler,
  type SdkClock,
  type TimerHandle,
} from './runtime.js'
export * from './credentials/index.js'
