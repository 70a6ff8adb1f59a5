import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import type { AegisConfig } from '../../config/schema.js'

const KEK_BYTES = 32
const IV_BYTES = 12
const TAG_BYTES = 16

/** Raised when no usable key-encryption key is configured; the message says how to give one. */
export class KekError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'KekError'
  }
}

/**
 * Parses a KEK given as text: 64 hex digits, or base64 / base64url of 32
 * bytes. Throws KekError (never echoing the value) otherwise.
 */
export function parseKek(text: string, where: string): Buffer {
  const s = text.trim()
  if (/^[0-9a-fA-F]{64}$/.test(s)) return Buffer.from(s, 'hex')
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(s)) {
    const buf = Buffer.from(s, 'base64')
    if (buf.length === KEK_BYTES) return buf
  }
  throw new KekError(`${where}: the KEK must be 32 bytes, written as 64 hex digits or base64 (e.g. \`openssl rand -base64 32\`)`)
}

function readKekFile(path: string, where: string): Buffer {
  let raw: Buffer
  try {
    raw = readFileSync(path)
  } catch (err) {
    throw new KekError(`${where}: cannot read KEK file ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err })
  }
  // A file written by `aegis dev` holds the 32 raw bytes; an operator's file may hold text.
  if (raw.length === KEK_BYTES) return Buffer.from(raw)
  return parseKek(raw.toString('utf8'), `${where} (${path})`)
}

/**
 * Loads the key-encryption key for private signing keys at rest, in this
 * order: `config.kek` (AEGIS_KEK), then the file `config.kekFile`
 * (AEGIS_KEK_FILE), else `<dataDir>/kek`. When that file does not exist and
 * `createIfMissing` is set (`aegis dev`), creates it with 32 random bytes
 * (file mode 0600, a new directory 0700). Otherwise rejects with a KekError
 * saying what to set, so a control plane never starts without a KEK.
 */
export async function loadKek(config: AegisConfig, opts: { createIfMissing: boolean }): Promise<Buffer> {
  if (config.kek !== undefined && config.kek !== '') return parseKek(config.kek, 'AEGIS_KEK')
  const explicit = config.kekFile !== undefined && config.kekFile !== ''
  const path = explicit ? resolve(config.kekFile!) : join(resolve(config.dataDir), 'kek')
  const where = explicit ? 'AEGIS_KEK_FILE' : 'data dir KEK'
  try {
    return readKekFile(path, where)
  } catch (err) {
    const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code
    if (code !== 'ENOENT' || (explicit && !opts.createIfMissing)) throw err
  }
  if (!opts.createIfMissing) {
    throw new KekError(
      'no key-encryption key: set AEGIS_KEK (32 bytes, base64 or hex, e.g. `openssl rand -base64 32`) or AEGIS_KEK_FILE; ' +
        'every control plane sharing one database needs the same KEK',
    )
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  const kek = randomBytes(KEK_BYTES)
  try {
    // 'wx': never overwrite a KEK another process created a moment ago.
    writeFileSync(path, kek, { mode: 0o600, flag: 'wx' })
    chmodSync(path, 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readKekFile(path, where)
    throw new KekError(`cannot create KEK file ${path} (${(err as Error).message})`, { cause: err })
  }
  return kek
}

/**
 * AES-256-GCM encryption of a private key (PKCS#8 DER). The kid is the
 * additional authenticated data, so a ciphertext copied onto another key row
 * fails to decrypt. Returns base64url(iv || tag || ciphertext) with a fresh
 * random 96-bit IV.
 */
export function encryptPrivateKey(kek: Buffer, kid: string, pkcs8: Buffer): string {
  if (kek.length !== KEK_BYTES) throw new KekError('KEK must be 32 bytes')
  const iv = randomBytes(IV_BYTES)
  const cipher = createCipheriv('aes-256-gcm', kek, iv)
  cipher.setAAD(Buffer.from(kid, 'utf8'))
  const ct = Buffer.concat([cipher.update(pkcs8), cipher.final()])
  return Buffer.concat([iv, cipher.getAuthTag(), ct]).toString('base64url')
}

/**
 * Reverses encryptPrivateKey. Throws KekError when the KEK is wrong, the
 * blob was altered, or it belongs to another kid.
 */
export function decryptPrivateKey(kek: Buffer, kid: string, blob: string): Buffer {
  const raw = Buffer.from(blob, 'base64url')
  if (raw.length <= IV_BYTES + TAG_BYTES) throw new KekError(`encrypted private key of ${kid} is truncated`)
  try {
    const decipher = createDecipheriv('aes-256-gcm', kek, raw.subarray(0, IV_BYTES))
    decipher.setAAD(Buffer.from(kid, 'utf8'))
    decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES))
    return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()])
  } catch (err) {
    throw new KekError(`cannot decrypt the private key of ${kid}: wrong KEK, or the key row was altered`, { cause: err })
  }
}
