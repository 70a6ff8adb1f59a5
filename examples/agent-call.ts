/**
 * An agent that gets an Aegis token and asks the gateway before each tool
 * call: a dry run of a risky transfer, a read it then performs against the
 * tool server, and a transfer that may need a human approval, awaited.
 *
 * Run against `aegis dev` (values from its banner):
 *   AEGIS_ISSUER=http://127.0.0.1:7400 AEGIS_GATEWAY_URL=http://127.0.0.1:7401 \
 *   AEGIS_CLIENT_ID=… AEGIS_CLIENT_SECRET=… npx tsx examples/agent-call.ts
 *
 * Optional: AEGIS_TOOL_URL (examples/tool-server.ts, to perform the read),
 * AEGIS_APPROVAL_TIMEOUT_MS (default 60000), AEGIS_TRANSFER_AMOUNT (default 2500).
 * Prints one JSON line per step (never a token).
 */
import { AegisClient, AegisSdkError, type AuthorizeResult } from '../src/sdk/index.js'

function env(name: string): string {
  const v = process.env[name]
  if (!v) {
    process.stderr.write(`${name} is required (see the banner of \`aegis dev\`)\n`)
    process.exit(2)
  }
  return v
}

const log = (step: string, fields: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ step, ...fields })}\n`)
}
const summary = (d: AuthorizeResult): Record<string, unknown> => ({
  decision: d.decision,
  enforced: d.enforced,
  reasons: d.reasons,
  policy_version: d.policy_version,
  ...(d.approval ? { approval: { id: d.approval.id, outcome: d.approval.outcome } } : {}),
})

const client = new AegisClient({
  issuer: env('AEGIS_ISSUER'),
  clientId: env('AEGIS_CLIENT_ID'),
  clientSecret: env('AEGIS_CLIENT_SECRET'),
  gatewayUrl: env('AEGIS_GATEWAY_URL'),
  scope: ['crm:read', 'payments:write'],
  // Every decision that was not enforced (dry runs, shadow-mode policies) lands here.
  onDryRunDecision: (d) => log('would_be', summary(d)),
})

const transfer = { tool: 'payments.transfer', params: { amount: Number(process.env.AEGIS_TRANSFER_AMOUNT ?? 2500), currency: 'EUR', to: 'acct-9' } }

try {
  // 1. What would the gateway say? Nothing is enforced, no approval is opened.
  const dry = await client.authorize(transfer, { dryRun: true })
  log('dry_run', summary(dry))

  // 2. A read, then the call itself through the tool server with the same token.
  const read = await client.authorize({ tool: 'crm.read', params: { id: '42' } })
  log('authorize', { tool: 'crm.read', ...summary(read) })
  const toolUrl = process.env.AEGIS_TOOL_URL
  if (toolUrl && (read.decision === 'allow' || read.decision === 'sanitize')) {
    const res = await client.fetch(`${toolUrl}/crm/records/42`)
    log('tool_call', { status: res.status, body: (await res.json()) as unknown })
  }

  // 3. A transfer: if a human must approve, wait for it, then the SDK repeats
  // exactly this call with the one-time override token.
  const paid = await client.authorize(transfer, { waitForApproval: true, timeoutMs: Number(process.env.AEGIS_APPROVAL_TIMEOUT_MS ?? 60_000) })
  log('authorize', { tool: transfer.tool, ...summary(paid) })
  process.exitCode = 0
} catch (err) {
  // SDK errors carry an OAuth code and status, never a token or secret.
  log('error', err instanceof AegisSdkError ? { code: err.code, status: err.status, message: err.message } : { message: String(err) })
  process.exitCode = 1
} finally {
  client.close()
}
