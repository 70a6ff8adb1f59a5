import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { startRoles } from '../../../src/cli/run-roles.js'
import { loadConfig } from '../../../src/config/load.js'
import { freePort } from '../control-plane/harness.js'
import { makeCa, makeLeaf, pkiDir, rmPki } from './pki.js'

function get(url: string, ca: string, cert?: { cert: string; key: string }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, agent: false, ...cert }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => { body += c.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

test('aegis serve --role all with tls.cert/tls.key also listens with TLS on both roles and advertises the mTLS aliases', async () => {
  const pki = pkiDir()
  const dataDir = mkdtempSync(join(tmpdir(), 'aegis-cli-tls-'))
  const ca = makeCa(pki, 'CLI CA')
  const server = makeLeaf(ca, 'srv', { subject: '/CN=127.0.0.1', san: ['IP:127.0.0.1'], server: true })
  const [cp, cpTls, gw, gwTls] = [await freePort(), await freePort(), await freePort(), await freePort()]
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir, kek: randomBytes(32).toString('hex'), logLevel: 'silent', issuer: `http://127.0.0.1:${cp}`,
      adminToken: `adm_${randomBytes(24).toString('base64url')}`,
      control: { host: '127.0.0.1', port: cp, tlsPort: cpTls },
      gateway: { host: '127.0.0.1', port: gw, tlsPort: gwTls },
      tls: { cert: server.certFile, key: server.keyFile, clientCa: ca.certFile },
    },
  })
  const running = await startRoles(config, 'all')
  try {
    assert.equal(running.controlPlane?.tlsUrl, `https://127.0.0.1:${cpTls}`)
    assert.equal(running.gateway?.tlsUrl, `https://127.0.0.1:${gwTls}`)
    const meta = await get(`https://127.0.0.1:${cpTls}/.well-known/oauth-authorization-server`, ca.certPem)
    assert.equal(meta.status, 200)
    assert.equal(JSON.parse(meta.body).mtls_endpoint_aliases.token_endpoint, `https://127.0.0.1:${cpTls}/oauth2/token`)
    const client = makeLeaf(ca, 'c', { subject: '/CN=c' })
    const health = await get(`https://127.0.0.1:${gwTls}/healthz`, ca.certPem, { cert: client.certPem, key: client.keyPem })
    assert.equal(health.status, 200)
  } finally {
    await running.close()
    rmSync(dataDir, { recursive: true, force: true })
    rmPki(pki)
  }
})
