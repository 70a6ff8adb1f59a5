/**
 * A tool server that trusts Aegis tokens: verifies each call's bearer token
 * locally (JWKS fetched once and cached, Ed25519 checked in-process) with
 * `aegis/verify`'s plain node:http guard, and hands the verified claims to
 * the handler.
 *
 * Run against `aegis dev`:
 *   AEGIS_ISSUER=http://127.0.0.1:7400 npx tsx examples/tool-server.ts
 *
 * Env: AEGIS_ISSUER (required), AEGIS_AUDIENCE (default aegis-gateway),
 * TOOL_PORT (default 7410; 0 picks a free port).
 * Prints one JSON line `{"listening": "<url>"}` when ready.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createVerifier, nodeHttpAegis } from '../src/verify/index.js'

const issuer = process.env.AEGIS_ISSUER
if (!issuer) {
  process.stderr.write('AEGIS_ISSUER is required (the control plane URL printed by `aegis dev`)\n')
  process.exit(2)
}
const verifier = createVerifier({ issuer, audience: process.env.AEGIS_AUDIENCE ?? 'aegis-gateway' })
const guardCrm = nodeHttpAegis(verifier, { requiredScopes: ['crm:read'] })

const records: Record<string, { id: string; name: string; tier: string }> = {
  '42': { id: '42', name: 'Ada Lovelace', tier: 'gold' },
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
  res.end(JSON.stringify(body))
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://tool.local')
  if (req.method === 'GET' && url.pathname === '/healthz') return send(res, 200, { ok: true })
  if (req.method === 'GET' && url.pathname.startsWith('/crm/records/')) {
    // The guard answers 401/403 itself (with WWW-Authenticate) and returns null.
    const claims = await guardCrm(req, res)
    if (!claims) return
    const record = records[url.pathname.slice('/crm/records/'.length)]
    if (!record) return send(res, 404, { error: 'not_found', error_description: 'no such record' })
    return send(res, 200, { record, served_to: { agent_id: claims.agent_id, tenant: claims.tenant } })
  }
  send(res, 404, { error: 'not_found', error_description: 'no such route' })
}

const server = createServer((req, res) => {
  handle(req, res).catch(() => send(res, 500, { error: 'server_error', error_description: 'internal error' }))
})
server.listen(Number(process.env.TOOL_PORT ?? 7410), '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo
  process.stdout.write(`${JSON.stringify({ listening: `http://127.0.0.1:${port}` })}\n`)
})

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    verifier.close()
    server.close(() => process.exit(0))
    server.closeAllConnections()
  })
}
