// An agent with aegis/sdk, against `aegis dev` with the walk-through's policy active:
//   AEGIS_CLIENT_ID=… AEGIS_CLIENT_SECRET=… npx tsx examples/sdk-agent.ts
// (the demo agent's client_id and client_secret from the banner: a secret that
// can be used again, so the client can refresh its token in the background).
import { AegisClient } from 'aegis/sdk'

const client = new AegisClient({
  issuer: process.env.AEGIS_ISSUER ?? 'http://127.0.0.1:7400',
  clientId: process.env.AEGIS_CLIENT_ID!,
  clientSecret: process.env.AEGIS_CLIENT_SECRET!,
  gatewayUrl: process.env.AEGIS_GATEWAY_URL ?? 'http://127.0.0.1:7401',
})
const token = await client.getToken() // cached, refreshed at a random 60–85 % of its life, single flight
console.log('token for', JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub)

// A tool server that verifies Aegis tokens (examples/tool-server.ts): attaches the token; one refresh + retry on invalid_token.
const res = await client.fetch(`${process.env.AEGIS_TOOL_URL ?? 'http://127.0.0.1:7410'}/crm/records/42`)
console.log('tool server:', res.status, await res.json())

// Above 1,000 the policy asks finance: this waits until a person approves (console, Slack or curl, step 6),
// then repeats exactly this call with the one-time override.
const d = await client.authorize(
  { tool: 'payments.transfer', params: { amount: 5000, currency: 'EUR' } },
  { resource: 'account:ops', waitForApproval: true, timeoutMs: 600_000 },
)
console.log(d.decision, d.reasons)
client.close()
