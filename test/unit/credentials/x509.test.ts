import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { certThumbprint, certificateMatches, forwardedCertificate, normalizeAddress, presentedCertificate, validateChain } from '../../../src/lib/x509.js'
import { asn1Time, makeCa, makeLeaf, pkiDir, rmPki, type Ca, type Issued } from '../../integration/credentials/pki.js'

describe('lib/x509', () => {
  let dir: string
  let ca: Ca
  let leaf: Issued
  let cert: X509Certificate

  before(() => {
    dir = pkiDir()
    ca = makeCa(dir, 'Unit CA')
    leaf = makeLeaf(ca, 'leaf', { subject: '/CN=agent, one/O=Acme', san: ['URI:spiffe://acme.test/ns/a/sa/b', 'DNS:Agent.Acme.Test'] })
    cert = new X509Certificate(leaf.certPem)
  })
  after(() => rmPki(dir))

  test('pins: DN (RFC 4514 escaping), SPIFFE URI, DNS (case-insensitive), thumbprint; every set pin must match', () => {
    assert.equal(certificateMatches(cert, { subjectDn: 'CN=agent\\, one,O=Acme' }), true)
    assert.equal(certificateMatches(cert, { subjectDn: 'CN=agent\\, one' }), false)
    assert.equal(certificateMatches(cert, { sanUri: 'spiffe://acme.test/ns/a/sa/b' }), true)
    assert.equal(certificateMatches(cert, { sanUri: 'spiffe://acme.test/ns/a/sa/c' }), false)
    assert.equal(certificateMatches(cert, { sanDns: 'agent.acme.test' }), true)
    assert.equal(certificateMatches(cert, { thumbprint: certThumbprint(cert) }), true)
    assert.equal(certificateMatches(cert, { sanDns: 'agent.acme.test', sanUri: 'spiffe://acme.test/other' }), false)
    assert.equal(certificateMatches(cert, {}), false)
  })

  test('chain: trusted, expired, not yet valid, other CA, no CA', () => {
    const roots = [new X509Certificate(ca.certPem)]
    const now = Date.now()
    assert.equal(validateChain(cert, [], roots, now), null)
    assert.equal(validateChain(cert, [], roots, now + 30 * 86_400_000), 'expired')
    const future = makeLeaf(ca, 'future', {
      subject: '/CN=f',
      startDate: asn1Time(new Date(now + 86_400_000)),
      endDate: asn1Time(new Date(now + 2 * 86_400_000)),
    })
    assert.equal(validateChain(new X509Certificate(future.certPem), [], roots, now), 'not_yet_valid')
    const other = makeCa(dir, 'Other')
    assert.equal(validateChain(cert, [], [new X509Certificate(other.certPem)], now), 'untrusted')
    assert.equal(validateChain(cert, [], [], now), 'no_ca')
    // The client's own "CA" in the presented chain is not a trust anchor.
    assert.equal(validateChain(cert, [new X509Certificate(ca.certPem)], [new X509Certificate(other.certPem)], now), 'untrusted')
  })

  test('forwarded certificates: Envoy XFCC (last element, quoted Cert) and nginx escaped PEM', () => {
    const enc = encodeURIComponent(leaf.certPem)
    const xfcc = `By=spiffe://a;Hash=1;Cert="${encodeURIComponent(ca.certPem)}",By=spiffe://b;Hash=2;Subject="CN=x,O=y";Cert="${enc}"`
    assert.equal(certThumbprint(forwardedCertificate(xfcc)!), certThumbprint(cert))
    assert.equal(certThumbprint(forwardedCertificate(enc)!), certThumbprint(cert))
    assert.equal(forwardedCertificate('By=spiffe://a;Hash=1'), null)
    assert.throws(() => forwardedCertificate('Cert="garbage"'))
  })

  test('a forwarded header counts only from a trusted proxy address', () => {
    const headers = { 'x-client-cert': encodeURIComponent(leaf.certPem) }
    const tls = { trustedProxies: ['10.0.0.5'], clientCertHeader: 'X-Client-Cert' }
    assert.ok(presentedCertificate({ socket: { remoteAddress: '::ffff:10.0.0.5' }, headers }, tls))
    assert.equal(presentedCertificate({ socket: { remoteAddress: '10.0.0.6' }, headers }, tls), null)
    assert.equal(presentedCertificate({ socket: { remoteAddress: '10.0.0.5' }, headers }, { trustedProxies: ['10.0.0.5'] }), null)
    assert.throws(() => presentedCertificate({ socket: { remoteAddress: '10.0.0.5' }, headers: { 'x-client-cert': ['a', 'b'] } }, tls))
    assert.equal(normalizeAddress('::ffff:127.0.0.1'), '127.0.0.1')
  })
})
