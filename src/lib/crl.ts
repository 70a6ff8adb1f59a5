/**
 * Certificate revocation lists (RFC 5280 §5) for client certificates: a
 * small DER reader for what revocation needs (the CRL's issuer, dates,
 * revoked serial numbers and signature; a certificate's issuer, subject and
 * serial number), and the check of a validated chain against CRLs whose
 * signature verifies with the issuing certificate. node:crypto only; Node
 * has no CRL parser outside a TLS handshake, and the handshake cannot see
 * certificates a proxy forwards nor per-tenant CRLs.
 */
import { createHash, verify as verifySignature, type X509Certificate } from 'node:crypto'

/** One TLV element of DER: its tag byte, where its content lies, and its whole encoding. */
interface Tlv {
  tag: number
  content: Buffer
  /** Tag + length + content, as encoded. */
  raw: Buffer
}

function readTlv(buf: Buffer, at: number): Tlv & { end: number } {
  if (at + 2 > buf.length) throw new Error('truncated DER')
  const tag = buf[at]!
  if ((tag & 0x1f) === 0x1f) throw new Error('high tag numbers are not used in CRLs')
  let len = buf[at + 1]!
  let off = at + 2
  if (len & 0x80) {
    const n = len & 0x7f
    if (n === 0 || n > 4 || off + n > buf.length) throw new Error('bad DER length')
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + buf[off + i]!
    off += n
  }
  const end = off + len
  if (end > buf.length) throw new Error('truncated DER')
  return { tag, content: buf.subarray(off, end), raw: buf.subarray(at, end), end }
}

/** The elements inside a constructed TLV's content. */
function children(content: Buffer): Tlv[] {
  const out: Tlv[] = []
  for (let at = 0; at < content.length; ) {
    const t = readTlv(content, at)
    out.push(t)
    at = t.end
  }
  return out
}

const SEQUENCE = 0x30
const INTEGER = 0x02
const OID = 0x06
const BIT_STRING = 0x03
const UTC_TIME = 0x17
const GENERALIZED_TIME = 0x18

function expect(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new Error(`${what} missing`)
  return t
}

function oidText(content: Buffer): string {
  const parts: number[] = [Math.floor(content[0]! / 40), content[0]! % 40]
  let v = 0
  for (let i = 1; i < content.length; i++) {
    v = v * 128 + (content[i]! & 0x7f)
    if (!(content[i]! & 0x80)) {
      parts.push(v)
      v = 0
    }
  }
  return parts.join('.')
}

function timeOf(t: Tlv): number {
  const s = t.content.toString('latin1')
  const m = t.tag === UTC_TIME ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s)
  if (!m) throw new Error('bad time')
  let year = Number(m[1])
  if (t.tag === UTC_TIME) year += year < 50 ? 2000 : 1900
  return Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]))
}

/** A serial number as uppercase hex without leading zero bytes. */
function serialHex(content: Buffer): string {
  let i = 0
  while (i < content.length - 1 && content[i] === 0) i++
  return content.subarray(i).toString('hex').toUpperCase()
}

/** Signature algorithms CRLs are signed with: OID → digest for crypto.verify (null for Ed25519). */
const SIGNATURE_ALGORITHMS: Record<string, string | null> = {
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.3.2': 'sha256', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.3.101.112': null, // Ed25519
}

/** A parsed CRL. */
export interface Crl {
  /** DER of the issuer Name, compared byte for byte with a certificate's issuer. */
  issuer: Buffer
  /** epoch ms */
  thisUpdate: number
  /** epoch ms; null when the CRL names none. */
  nextUpdate: number | null
  /** Revoked serial numbers (uppercase hex, no leading zero bytes). */
  revoked: ReadonlySet<string>
  tbs: Buffer
  /** Digest for crypto.verify; null = Ed25519. */
  digest: string | null
  signature: Buffer
  /** SHA-256 of the whole CRL (cache key). */
  id: string
}

/** Parses one DER CRL; throws on anything it cannot read or a signature algorithm it does not accept (SHA-1, RSA-PSS). */
export function parseCrlDer(der: Buffer): Crl {
  const top = readTlv(der, 0)
  if (top.tag !== SEQUENCE || top.end !== der.length) throw new Error('not a CRL')
  const [tbsT, algT, sigT] = children(top.content)
  const tbs = expect(tbsT, SEQUENCE, 'tbsCertList')
  const algOid = oidText(expect(children(expect(algT, SEQUENCE, 'signatureAlgorithm').content)[0], OID, 'algorithm').content)
  if (!(algOid in SIGNATURE_ALGORITHMS)) throw new Error(`CRL signature algorithm ${algOid} not accepted`)
  const sig = expect(sigT, BIT_STRING, 'signature')
  if (sig.content[0] !== 0) throw new Error('bad signature bit string')
  const f = children(tbs.content)
  let i = 0
  if (f[i]?.tag === INTEGER) i++ // version (v2)
  expect(f[i++], SEQUENCE, 'signature')
  const issuer = expect(f[i++], SEQUENCE, 'issuer')
  const thisT = f[i++]
  if (!thisT || (thisT.tag !== UTC_TIME && thisT.tag !== GENERALIZED_TIME)) throw new Error('thisUpdate missing')
  let nextUpdate: number | null = null
  if (f[i] && (f[i]!.tag === UTC_TIME || f[i]!.tag === GENERALIZED_TIME)) nextUpdate = timeOf(f[i++]!)
  const revoked = new Set<string>()
  if (f[i]?.tag === SEQUENCE) {
    for (const entry of children(f[i++]!.content)) {
      const serial = expect(children(expect(entry, SEQUENCE, 'revoked entry').content)[0], INTEGER, 'serial')
      revoked.add(serialHex(serial.content))
    }
  }
  return {
    issuer: Buffer.from(issuer.raw),
    thisUpdate: timeOf(thisT),
    nextUpdate,
    revoked,
    tbs: Buffer.from(tbs.raw),
    digest: SIGNATURE_ALGORITHMS[algOid]!,
    signature: Buffer.from(sig.content.subarray(1)),
    id: createHash('sha256').update(der).digest('hex'),
  }
}

/** Every CRL in a file's content: PEM blocks (`X509 CRL`), or one DER CRL. */
export function parseCrls(content: Buffer): Crl[] {
  const text = content.toString('latin1')
  if (text.includes('-----BEGIN X509 CRL-----')) {
    const blocks = text.match(/-----BEGIN X509 CRL-----([\s\S]+?)-----END X509 CRL-----/g) ?? []
    return blocks.map((b) => parseCrlDer(Buffer.from(b.replace(/-----(BEGIN|END) X509 CRL-----|\s+/g, ''), 'base64')))
  }
  return [parseCrlDer(content)]
}

/** What revocation needs of a certificate: issuer and subject Name DER, serial number. */
export interface CertNames {
  issuer: Buffer
  subject: Buffer
  serial: string
}

const namesCache = new WeakMap<X509Certificate, CertNames>()

/** Issuer, subject and serial number of a certificate, read from its DER. */
export function certNames(cert: X509Certificate): CertNames {
  let n = namesCache.get(cert)
  if (!n) {
    const tbs = expect(children(readTlv(cert.raw, 0).content)[0], SEQUENCE, 'tbsCertificate')
    const f = children(tbs.content)
    let i = f[0]?.tag === 0xa0 ? 1 : 0 // [0] EXPLICIT version
    const serial = expect(f[i++], INTEGER, 'serialNumber')
    i++ // signature
    const issuer = expect(f[i++], SEQUENCE, 'issuer')
    i++ // validity
    const subject = expect(f[i], SEQUENCE, 'subject')
    n = { issuer: Buffer.from(issuer.raw), subject: Buffer.from(subject.raw), serial: serialHex(serial.content) }
    namesCache.set(cert, n)
  }
  return n
}

const verified = new Map<string, boolean>()

/** True when `crl` was signed by `issuerCert` (same Name, signature verifies). Cached per CRL and issuer. */
export function crlSignedBy(crl: Crl, issuerCert: X509Certificate): boolean {
  if (!crl.issuer.equals(certNames(issuerCert).subject)) return false
  const key = `${crl.id}:${issuerCert.fingerprint256}`
  let ok = verified.get(key)
  if (ok === undefined) {
    try {
      ok = verifySignature(crl.digest, crl.tbs, issuerCert.publicKey, crl.signature)
    } catch {
      ok = false
    }
    if (verified.size > 10_000) verified.clear()
    verified.set(key, ok)
  }
  return ok
}

/**
 * True when `cert` (issued by `issuerCert`) is listed by one of `crls`
 * signed by that issuer. A CRL past its nextUpdate still counts: what it
 * revoked stays revoked (the caller warns that it is stale).
 */
export function isRevoked(cert: X509Certificate, issuerCert: X509Certificate, crls: readonly Crl[]): boolean {
  const names = certNames(cert)
  for (const crl of crls) {
    if (!crl.issuer.equals(names.issuer)) continue
    if (crl.revoked.has(names.serial) && crlSignedBy(crl, issuerCert)) return true
  }
  return false
}
