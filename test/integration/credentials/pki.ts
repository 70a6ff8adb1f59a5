/**
 * A test PKI made in the test with the openssl CLI (ECDSA P-256): CAs, a
 * server certificate for 127.0.0.1, client certificates with chosen subject,
 * SANs and validity (`openssl ca -startdate/-enddate`, so an expired
 * certificate really is expired).
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Issued {
  certPem: string
  keyPem: string
  certFile: string
  keyFile: string
}

export interface Ca extends Issued {
  dir: string
}

function ossl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

/** Root directory of one test's PKI; remove with `rmPki`. */
export function pkiDir(): string {
  return mkdtempSync(join(tmpdir(), 'aegis-pki-'))
}

export function rmPki(dir: string): void {
  rmSync(dir, { recursive: true, force: true })
}

let n = 0

/** A self-signed CA under `root`. */
export function makeCa(root: string, name: string): Ca {
  const dir = join(root, `ca-${++n}`)
  mkdirSync(join(dir, 'new'), { recursive: true })
  writeFileSync(join(dir, 'index.txt'), '')
  writeFileSync(join(dir, 'serial'), `${(0x1000 + n).toString(16)}\n`)
  writeFileSync(
    join(dir, 'ca.cnf'),
    `[ ca ]
default_ca = test
[ test ]
dir = ${dir}
database = $dir/index.txt
new_certs_dir = $dir/new
serial = $dir/serial
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
policy = any
unique_subject = no
copy_extensions = copy
email_in_dn = no
[ any ]
commonName = supplied
organizationName = optional
organizationalUnitName = optional
[ leaf ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
`,
  )
  ossl(['ecparam', '-genkey', '-name', 'prime256v1', '-noout', '-out', 'ca.key'], dir)
  ossl(
    [
      'req',
      '-new',
      '-x509',
      '-key',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '30',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  )
  return {
    dir,
    certFile: join(dir, 'ca.pem'),
    keyFile: join(dir, 'ca.key'),
    certPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    keyPem: readFileSync(join(dir, 'ca.key'), 'utf8'),
  }
}

export interface LeafOptions {
  /** e.g. `/CN=agent-1/O=Acme`. */
  subject: string
  /** subjectAltName entries, e.g. `URI:spiffe://acme.test/agent`, `DNS:agent.acme.test`, `IP:127.0.0.1`. */
  san?: string[]
  /** `YYYYMMDDHHMMSSZ`. */
  startDate?: string
  endDate?: string
  server?: boolean
}

/** `YYYYMMDDHHMMSSZ` for a Date. */
export function asn1Time(d: Date): string {
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`
}

/** A leaf certificate signed by `ca`. */
export function makeLeaf(ca: Ca, name: string, o: LeafOptions): Issued {
  const id = `${name}-${++n}`
  const keyFile = join(ca.dir, `${id}.key`)
  const csr = join(ca.dir, `${id}.csr`)
  const certFile = join(ca.dir, `${id}.pem`)
  ossl(['ecparam', '-genkey', '-name', 'prime256v1', '-noout', '-out', keyFile], ca.dir)
  const req = ['req', '-new', '-key', keyFile, '-out', csr, '-subj', o.subject]
  if (o.san && o.san.length > 0) req.push('-addext', `subjectAltName=${o.san.join(',')}`)
  req.push('-addext', `extendedKeyUsage=${o.server ? 'serverAuth' : 'clientAuth'}`)
  ossl(req, ca.dir)
  const day = 86_400_000
  ossl(
    [
      'ca',
      '-batch',
      '-config',
      'ca.cnf',
      '-extensions',
      'leaf',
      '-in',
      csr,
      '-out',
      certFile,
      '-notext',
      '-startdate',
      o.startDate ?? asn1Time(new Date(Date.now() - day)),
      '-enddate',
      o.endDate ?? asn1Time(new Date(Date.now() + 7 * day)),
    ],
    ca.dir,
  )
  return { certFile, keyFile, certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') }
}
