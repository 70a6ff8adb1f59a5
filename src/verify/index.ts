/**
 * `aegis/verify`: local verification of Aegis access tokens for gateways and
 * tool servers. Imports no server code: only node built-ins, `lru-cache`,
 * pure helpers from `lib/`, and optionally `sodium-native` (Ed25519 through
 * libsodium, about twice as fast as node:crypto; node:crypto when it does not load).
 *
 * @example
 * import { createVerifier, nodeHttpAegis } from 'aegis/verify'
 * const verifier = createVerifier({ issuer: 'https://aegis.example', audience: 'crm-tool' })
 * const { claims } = await verifier.verify(token)   // right after creation: waits for the first key load
 * const again = verifier.verifySync(token)          // hot path once keys are loaded: no promise
 *
 * @packageDocumentation
 */
export { createVerifier, KID_INVALID } from './verifier.js'
export type { AccessTokenClaims, ActorClaim, ConfirmationClaim, VerifiedHeader, VerifiedToken, Verifier, VerifierOptions } from './verifier.js'
export { JwksClient } from './jwks-client.js'
export { localKeySet } from './jwk-set.js'
export type { KeySource } from './jwk-set.js'
export type { Ed25519Backend } from './ed25519.js'
export type { JwksClientOptions, JwksFetchEvent, JwksStats, VerificationKey, VerifyAlgorithm } from './jwks-client.js'
export { VerifyError } from './errors.js'
export type { VerifyFailureReason } from './errors.js'
export { bearerToken, expressAegis, fastifyAegis, nodeHttpAegis, verifyRequest } from './middleware.js'
export type { ExpressLikeRequest, VerifyRequestOptions, VerifyRequestRefusal, VerifyRequestResult } from './middleware.js'
