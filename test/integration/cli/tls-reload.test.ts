/**
 * The TLS listeners take up a changed certificate, key and client CA bundle
 * without a restart (the control plane's trust decisions reload on their
 * own; this is what the handshake itself presents and names).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:tls'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate, randomBytes } from 'node:crypto'
import { startRoles } from '../../../src/cli/run-roles.js'
import { loadConfig } from '../../../src/config/load.js'
import { makeCa, makeLeaf, pkiDir, rmPki } from '../credentials/pki.js'

function peerFingerprint(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca, servername: '127.0.0.1' }, () => {
      const fp = s.getPeerX509Certificate()?.fingerprint256 ?? ''
      s.end()
      resolve(fp)
    })
    s.on('error', reject)
  })
}

test('a TLS listener serves a replaced certificate and key to new connections without a restart', async () => {
  const pki = pkiDir()
  const dataDir = mkdtempSync(join(tmpdir(), 'aegis-tls-reload-'))
  const ca = makeCa(pki, 'Reload CA')
  const first = makeLeaf(ca, 'srv1', { subject: '/CN=127.0.0.1', san: ['IP:127.0.0.1'], server: true })
  const second = makeLeaf(ca, 'srv2', { subject: '/CN=127.0.0.1', san: ['IP:127.0.0.1'], server: true })
  const certFile = join(pki, 'live-cert.pem')
  const keyFile = join(pki, 'live-key.pem')
  writeFileSync(certFile, first.certPem)
  writeFileSync(keyFile, first.keyPem)
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir,
      kek: randomBytes(32).toString('hex'),
      logLevel: 'silent',
      issuer: 'http://127.0.0.1:9',
      control: { host: '127.0.0.1', port: 0, tlsPort: 0 },
      tls: { cert: certFile, key: keyFile, clientCa: ca.certFile, fileCheckSeconds: 1 },
    },
  })
  const running = await startRoles(config, 'control-plane')
  try {
    const port = running.controlPlane!.tlsPort!
    const before = await peerFingerprint(port, ca.certPem)
    assert.equal(before, new X509Certificate(first.certPem).fingerprint256)
    // Key first, then certificate: in between they do not match and the old pair stays in use.
    writeFileSync(keyFile, second.keyPem)
    writeFileSync(certFile, second.certPem)
    const want = new X509Certificate(second.certPem).fingerprint256
    let now = before
    for (let i = 0; i < 300 && now !== want; i++) {
      await new Promise((r) => setTimeout(r, 50))
      now = await peerFingerprint(port, ca.certPem)
    }
    assert.equal(now, want)
  } finally {
    await running.close()
    rmSync(dataDir, { recursive: true, force: true })
    rmPki(pki)
  }
})
