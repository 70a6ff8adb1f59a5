/** The token service: OAuth endpoints, metadata, grant handlers and client authenticators. */
export { tokenRoutes, tokenService, type TokenRoutesOptions, type TokenService } from './routes.js'
export { metadataRoutes, authorizationServerMetadata } from './metadata.js'
export { TokenIssuer, type IssueRequest, type IssuedToken, type TokenResponse } from './issue.js'
export { Directory, directoryFor } from './directory.js'
export { LocalTokenVerifier, type OwnTokenClaims, type VerifiedOwnToken } from './local-verify.js'
export { MemoryRateLimiter, RedisRateLimiter, type RateLimiter, type RateVerdict } from './rate-limit.js'
export { defaultGrants, clientCredentialsGrant, type GrantContext, type GrantHandler } from './grants/index.js'
export { createClientAuthenticators, ClientAuthenticators, ClientAuthFailure, readClientClaim } from './client-auth/index.js'
