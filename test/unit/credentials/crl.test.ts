import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { certNames, isRevoked, parseCrls } from '../../../src/lib/crl.js'
import { validateChain } from '../../../src/lib/x509.js'
import { makeCa, makeLeaf, pkiDir, rmPki, type Ca, type Issued } from '../../integration/credentials/pki.js'

const dir = pkiDir()
after(() => rmPki(dir))

function ossl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}
function revoke(ca: Ca, cert: Issued): void {
  ossl(['ca', '-batch', '-config', 'ca.cnf', '-revoke', cert.certFile], ca.dir)
}
function crlFile(ca: Ca, name: string): string {
  const out = join(ca.dir, name)
  ossl(['ca', '-batch', '-config', 'ca.cnf', '-gencrl', '-crldays', '7', '-out', out], ca.dir)
  return out
}
const x509 = (i: Issued | Ca): X509Certificate => new X509Certificate(i.certPem)

const ca = makeCa(dir, 'CRL Test CA')
const revoked = makeLeaf(ca, 'revoked', { subject: '/CN=revoked' })
const fine = makeLeaf(ca, 'fine', { subject: '/CN=fine' })
revoke(ca, revoked)
const pem = crlFile(ca, 'crl.pem')

test('a PEM CRL made by openssl lists the revoked serial, and only certificates of its signer are revoked by it', () => {
  const crls = parseCrls(readFileSync(pem))
  assert.equal(crls.length, 1)
  assert.ok(crls[0]!.revoked.has(certNames(x509(revoked)).serial))
  assert.equal(crls[0]!.revoked.size, 1)
  assert.ok(crls[0]!.nextUpdate! > Date.now())
  assert.equal(isRevoked(x509(revoked), x509(ca), crls), true)
  assert.equal(isRevoked(x509(fine), x509(ca), crls), false)
  assert.equal(validateChain(x509(revoked), [], [x509(ca)], Date.now(), crls), 'revoked')
  assert.equal(validateChain(x509(fine), [], [x509(ca)], Date.now(), crls), null)
})

test('a DER CRL and a PEM file of several CRLs read the same', () => {
  const der = join(ca.dir, 'crl.der')
  ossl(['crl', '-in', pem, '-outform', 'DER', '-out', der], ca.dir)
  const fromDer = parseCrls(readFileSync(der))
  assert.deepEqual([...fromDer[0]!.revoked], [...parseCrls(readFileSync(pem))[0]!.revoked])
  const other = makeCa(dir, 'Another CA')
  const both = join(dir, 'both.pem')
  writeFileSync(both, readFileSync(pem, 'utf8') + readFileSync(crlFile(other, 'crl.pem'), 'utf8'))
  const crls = parseCrls(readFileSync(both))
  assert.equal(crls.length, 2)
  assert.equal(isRevoked(x509(revoked), x509(ca), crls), true)
})

test('a CRL from an impostor CA with the same name listing the same serial revokes nothing', () => {
  const impostor = makeCa(dir, 'CRL Test CA')
  writeFileSync(join(impostor.dir, 'serial'), `${certNames(x509(revoked)).serial}\n`)
  const twin = makeLeaf(impostor, 'twin', { subject: '/CN=fine' })
  assert.equal(certNames(x509(twin)).serial, certNames(x509(revoked)).serial)
  revoke(impostor, twin)
  const forged = parseCrls(readFileSync(crlFile(impostor, 'forged.pem')))
  assert.ok(forged[0]!.issuer.equals(certNames(x509(ca)).subject), 'same issuer name')
  assert.equal(isRevoked(x509(revoked), x509(ca), forged), false, 'its signature does not verify with the real CA')
})

test('garbage is refused, not read as an empty CRL', () => {
  assert.throws(() => parseCrls(Buffer.from('-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n')))
  assert.throws(() => parseCrls(Buffer.from('not a crl')))
})
