import { parseArgs } from 'node:util'
import { mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { configFor } from '../main.js'
import { closeOnSignal, startRoles } from '../run-roles.js'
import { loadKek } from '../../control-plane/index.js'
import { randomSecret } from '../../lib/ids.js'

const HELP = `aegis dev [--config FILE]

Runs the control plane (127.0.0.1:7400) and a gateway (127.0.0.1:7401) in one
process on embedded storage under ./.aegis (SQLite, a KEK file with mode 0600),
then prints an admin token, a demo agent's client_id and secret, and curl lines
to mint a token and ask the gateway for a decision. Ctrl-C stops it cleanly.

AEGIS_CONTROL_PORT / AEGIS_GATEWAY_PORT move the listeners; the issuer follows
the control plane's port unless AEGIS_ISSUER is set, and the gateway always
talks to this process's control plane.`

const DEMO_TENANT = 'demo'
const DEMO_AGENT = 'demo-agent'

/** `aegis dev`: both roles, embedded storage, a ready-to-use demo agent. */
export async function runDev(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' }, help: { type: 'boolean' } }, strict: true })
  if (values.help) {
    process.stdout.write(`${HELP}\n`)
    return 0
  }

  const base = configFor(values.config)
  const dataDir = resolve(base.dataDir)
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  // dev owns its KEK file; `serve` refuses to start without one.
  if (!base.kek && !base.kekFile) await loadKek({ ...base, kekFile: join(dataDir, 'kek') }, { createIfMissing: true })
  const adminToken = base.adminToken ?? `aegis_admin_${randomSecret()}`
  const config = configFor(values.config, {
    dataDir,
    ...(base.kek || base.kekFile ? {} : { kekFile: join(dataDir, 'kek') }),
    adminToken,
    gatewayToken: base.gatewayToken ?? `aegis_gw_${randomSecret()}`,
    // Workload-identity issuers on this machine (a local kind cluster, a test OIDC server) may serve their JWKS here.
    ...(base.tokenExchange.jwksAllowedNetworks.length === 0 ? { tokenExchange: { jwksAllowedNetworks: ['127.0.0.0/8', '::1/128'] } } : {}),
  })

  const running = await startRoles(config, 'all')
  const cp = running.controlPlane!
  const admin = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }
  const call = async (method: 'POST' | 'GET', url: string, payload?: unknown): Promise<{ status: number; body: Record<string, unknown> }> => {
    const res = await cp.app.inject({ method, url, headers: admin, payload: payload === undefined ? undefined : JSON.stringify(payload) })
    return { status: res.statusCode, body: res.json() as Record<string, unknown> }
  }
  const tenant = await call('POST', '/admin/v1/tenants', { id: DEMO_TENANT, name: 'Demo tenant' })
  if (tenant.status !== 201 && tenant.status !== 409) throw new Error(`creating the demo tenant failed: ${JSON.stringify(tenant.body)}`)
  const agent = await call('POST', `/admin/v1/tenants/${DEMO_TENANT}/agents`, {
    agent_id: DEMO_AGENT,
    scopes: ['payments:write', 'crm:read'],
    capabilities: ['payments.transfer', 'crm.read'],
    // Within tokens.maxTtlSeconds, which an agent's cap may not exceed (AEGIS_TOKENS_MAX_TTL_SECONDS=60 aegis dev works).
    max_ttl_seconds: Math.min(900, config.tokens.maxTtlSeconds),
  })
  if (agent.status !== 201 && agent.status !== 409) throw new Error(`creating the demo agent failed: ${JSON.stringify(agent.body)}`)
  const cred = await call('POST', `/admin/v1/tenants/${DEMO_TENANT}/agents/${DEMO_AGENT}/bootstrap-credentials`, { ttl_seconds: 86400, single_use: false })
  if (cred.status !== 201) throw new Error(`creating the demo credential failed: ${JSON.stringify(cred.body)}`)
  const { client_id: clientId, client_secret: clientSecret } = cred.body as { client_id: string; client_secret: string }

  const gw = running.gateway!.url
  process.stdout.write(`
Aegis dev is running
  control plane  ${cp.url}   (issuer ${config.issuer})
  gateway        ${gw}
  console        ${cp.url}/console
  data           ${dataDir}

  admin token    ${adminToken}
  demo agent     ${DEMO_TENANT}/${DEMO_AGENT}
  client_id      ${clientId}
  client_secret  ${clientSecret}

Mint a token:
  curl -s -u '${clientId}:${clientSecret}' -d grant_type=client_credentials ${cp.url}/oauth2/token

Ask the gateway (TOKEN = access_token from above):
  curl -s -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \\
    -d '{"action":{"tool":"crm.read","params":{"id":"42"}}}' ${gw}/v1/authorize

Ctrl-C stops it cleanly.
`)
  await closeOnSignal(running, (l) => process.stderr.write(`${l}\n`))
  return 0
}
