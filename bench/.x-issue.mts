import autocannon from 'autocannon'
import { adminCall, startServeProcess } from './server-process.js'
const server = await startServeProcess('control-plane', { AEGIS_RATE_LIMIT_PER_CLIENT: '100000000', AEGIS_RATE_LIMIT_PER_IP: '100000000' })
await adminCall(server.url, server.adminToken, 'POST', '/admin/v1/tenants', { id: 'bench', name: 'Bench' })
await adminCall(server.url, server.adminToken, 'POST', '/admin/v1/tenants/bench/agents', { agent_id: 'bench-agent', scopes: ['payments:write', 'crm:read'], capabilities: ['payments.transfer', 'crm.read'], max_ttl_seconds: 600 })
const cred = (await adminCall(server.url, server.adminToken, 'POST', '/admin/v1/tenants/bench/agents/bench-agent/bootstrap-credentials', { ttl_seconds: 3600, single_use: false })) as { client_id: string; client_secret: string }
const basic = Buffer.from(`${cred.client_id}:${cred.client_secret}`).toString('base64')
const req = { url: `${server.url}/oauth2/token`, method: 'POST' as const, connections: 50, headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials' }
await autocannon({ ...req, duration: 3 })
console.log('PID', server.child.pid)
const r = await autocannon({ ...req, duration: Number(process.env.SECS ?? 15) })
console.log('rate', r.requests.average, 'p99', r.latency.p99)
await server.stop()
