export type { KeyManager } from './types.js'
export {
  createKeyManager,
  effectiveKeys,
  KEYS_LOCK,
  KEYS_SIGNAL,
  type KeyChange,
  type KeyManagerDeps,
  type ManagedKeyManager,
  type PublicKeyInfo,
} from './manager.js'
export { loadKek, parseKek, encryptPrivateKey, decryptPrivateKey, KekError } from './kek.js'
export { keyRoutes, keyToWire } from './routes.js'
