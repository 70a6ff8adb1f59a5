import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { startRoles } from '../../../src/cli/run-roles.js'
import { loadConfig } from '../../../src/config/load.js'
import { makeCa, makeLeaf, pkiDir, rmPki } from './pki.js'

function get(url: string, ca: string, cert?: { cert: string; key: string }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, agent: false, ...cert }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => {
        body += c.toString()
      })
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
  // Every listener on port 0, read back from what startRoles reports: no port is picked before it is bound.
  const config = loadConfig({
    env: {},
    overrides: {
      // Names no listener: with control.port 0 the gateway follows the control plane where it is bound.
      dataDir,
      kek: randomBytes(32).toString('hex'),
      logLevel: 'silent',
      issuer: 'http://127.0.0.1',
      adminToken: `adm_${randomBytes(24).toString('base64url')}`,
      control: { host: '127.0.0.1', port: 0, tlsPort: 0 },
      gateway: { host: '127.0.0.1', port: 0, tlsPort: 0 },
      tls: { cert: server.certFile, key: server.keyFile, clientCa: ca.certFile },
    },
  })
  const running = await startRoles(config, 'all')
  try {
    const cp = running.controlPlane!
    const gw = running.gateway!
    const ports = [cp.port, cp.tlsPort, gw.port, gw.tlsPort]
    assert.ok(
      ports.every((p) => typeof p === 'number' && p > 0),
      String(ports),
    )
    assert.equal(new Set(ports).size, 4)
    assert.equal(cp.url, `http://127.0.0.1:${cp.port}`)
    assert.equal(cp.tlsUrl, `https://127.0.0.1:${cp.tlsPort}`)
    assert.equal(gw.url, `http://127.0.0.1:${gw.port}`)
    assert.equal(gw.tlsUrl, `https://127.0.0.1:${gw.tlsPort}`)
    const meta = await get(`${cp.tlsUrl}/.well-known/oauth-authorization-server`, ca.certPem)
    assert.equal(meta.status, 200)
    // The alias names the port the OS chose, not the configured 0.
    assert.equal(JSON.parse(meta.body).mtls_endpoint_aliases.token_endpoint, `${cp.tlsUrl}/oauth2/token`)
    const client = makeLeaf(ca, 'c', { subject: '/CN=c' })
    // 200 once the gateway has loaded the JWKS and feed from the control plane it follows.
    let health = await get(`${gw.tlsUrl}/healthz`, ca.certPem, { cert: client.certPem, key: client.keyPem })
    for (let i = 0; health.status !== 200 && i < 100; i++) {
      await new Promise((r) => setTimeout(r, 50))
      health = await get(`${gw.tlsUrl}/healthz`, ca.certPem, { cert: client.certPem, key: client.keyPem })
    }
    assert.equal(health.status, 200, health.body)
  } finally {
    await running.close()
    rmSync(dataDir, { recursive: true, force: true })
    rmPki(pki)
  }
})
