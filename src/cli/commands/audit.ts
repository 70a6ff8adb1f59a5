import { parseArgs } from 'node:util'
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs'
import { silentLogger } from '../../observability/logger.js'
import { openStore } from '../../store/index.js'
import type { Store } from '../../store/types.js'
import { exportAudit, verifyAuditExport, verifyAuditStore, type AuditVerifyReport } from '../../control-plane/audit/index.js'
import type { CliContext } from '../context.js'

const HELP = `aegis audit verify [--json]
aegis audit export [--out FILE]
aegis audit verify-export FILE [--jwks JWKS_FILE] [--json]

Works on the store the configuration names (AEGIS_DATA_DIR or AEGIS_DATABASE_URL).

  verify         proves every audit chain whole: contiguous sequence, hash links,
                 recomputed hashes, signed checkpoints. Exit 0 only when whole;
                 otherwise exit 1 and print the first bad event
  export         writes JSON Lines (a header with the public keys, the events,
                 the signed checkpoints) to FILE or standard output
  verify-export  verifies an export offline with public keys only; --jwks takes
                 the keys from a JWK Set file you trust instead of the header`

function printReport(ctx: CliContext, report: AuditVerifyReport, json: boolean): number {
  if (json) {
    ctx.out(JSON.stringify(report, null, 2))
    return report.ok ? 0 : 1
  }
  const summary = `${report.events} events in ${report.chains.length} chain${report.chains.length === 1 ? '' : 's'}, ${report.checkpoints} signed checkpoint${report.checkpoints === 1 ? '' : 's'}`
  if (report.ok) {
    ctx.out(`audit log whole: ${summary}`)
    return 0
  }
  const b = report.firstBad!
  ctx.err(`audit log BROKEN: ${summary}`)
  ctx.err(`first bad event: id ${b.id ?? '(missing)'} chain ${b.chainId} seq ${b.chainSeq}: ${b.reason}`)
  for (const p of report.problems.slice(1)) ctx.err(`  also: id ${p.id ?? '(missing)'} chain ${p.chainId} seq ${p.chainSeq}: ${p.reason}`)
  return 1
}

/** `aegis audit verify|export|verify-export`; resolves to the exit code (0 ok/whole, 1 broken or failed, 2 usage). */
export async function auditCommand(argv: string[], ctx: CliContext): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv, allowPositionals: true, strict: true,
      options: { help: { type: 'boolean', short: 'h' }, out: { type: 'string', short: 'o' }, jwks: { type: 'string' }, json: { type: 'boolean' } },
    })
  } catch (err) {
    ctx.err(`aegis audit: ${(err as Error).message}\n\n${HELP}`)
    return 2
  }
  const { values, positionals } = parsed
  const [sub, ...rest] = positionals
  if (values.help || sub === 'help') {
    ctx.out(HELP)
    return 0
  }
  const usage = (msg: string): number => {
    ctx.err(`aegis audit: ${msg}\n\n${HELP}`)
    return 2
  }
  if (sub === 'verify-export') {
    if (rest.length !== 1) return usage('verify-export takes one FILE')
    if (values.out) return usage('--out goes with export')
    let lines: string[]
    let jwks: { keys: Record<string, unknown>[] } | undefined
    try {
      lines = readFileSync(rest[0]!, 'utf8').split('\n')
      if (values.jwks) {
        jwks = JSON.parse(readFileSync(values.jwks, 'utf8')) as { keys: Record<string, unknown>[] }
        if (!jwks || !Array.isArray(jwks.keys)) throw new Error(`${values.jwks} is not a JWK Set`)
      }
    } catch (err) {
      ctx.err(`aegis audit verify-export: ${(err as Error).message}`)
      return 1
    }
    return printReport(ctx, await verifyAuditExport(lines, jwks), values.json === true)
  }
  if (sub !== 'verify' && sub !== 'export') return usage(sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`)
  if (rest.length > 0) return usage(`unexpected argument "${rest[0]}"`)
  if (sub === 'verify' && values.out) return usage('--out goes with export')
  if (values.jwks) return usage('--jwks goes with verify-export')
  let store: Store | undefined
  try {
    store = await openStore(ctx.config, silentLogger())
    if (sub === 'verify') return printReport(ctx, await verifyAuditStore(store), values.json === true)
    if (values.out) {
      // The log names tenants and agents: readable by the owner only.
      const fd = openSync(values.out, 'w', 0o600)
      try {
        const r = await exportAudit(store, (line) => { writeSync(fd, line + '\n') })
        ctx.err(`exported ${r.events} events and ${r.checkpoints} checkpoints to ${values.out}`)
      } finally {
        closeSync(fd)
      }
    } else {
      await exportAudit(store, ctx.out)
    }
    return 0
  } catch (err) {
    ctx.err(`aegis audit ${sub}: ${err instanceof Error ? err.message : String(err)}`)
    return 1
  } finally {
    await store?.close().catch(() => {})
  }
}
