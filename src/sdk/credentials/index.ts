/**
 * Stronger agent credentials for `aegis/sdk`: mTLS client certificates
 * (RFC 8705), private_key_jwt (RFC 7523), DPoP (RFC 9449) and workload
 * identity files for token exchange (RFC 8693). Node built-ins only.
 */
export { DpopKey, type DpopProofOptions } from './dpop.js'
export { PrivateKeyJwtSource, type PrivateKeyJwtSourceOptions } from './private-key-jwt.js'
export { mtlsFetch, TlsClientAuthSource, discoverMtlsTokenEndpoint, type ClientCertificate, type MtlsFetch, type TlsClientAuthSourceOptions } from './mtls.js'
export { subjectTokenFile } from './workload.js'
export { signJws, publicJwk, type SigningAlg, type PrivateKeyInput } from './jws.js'
