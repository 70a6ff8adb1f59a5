import cluster from 'node:cluster'
import { parseArgs } from 'node:util'
import { gatewayWorkerCount, isGatewayWorker, runGatewayPrimary, runGatewayWorker } from '../gateway-workers.js'
import { configFor } from '../main.js'
import { closeOnSignal, startRoles, type Role } from '../run-roles.js'

const HELP = `aegis serve --role control-plane|gateway|all [--config FILE] [--workers N]

Starts the given role(s) with the configuration from FILE and AEGIS_* variables.
A gateway follows AEGIS_CONTROL_PLANE_URL (default AEGIS_ISSUER; with --role
all, its own control plane where it is bound) with AEGIS_GATEWAY_TOKEN. The
default issuer is http://AEGIS_CONTROL_HOST:AEGIS_CONTROL_PORT. A port of 0
takes any free port (then set AEGIS_ISSUER); the addresses bound are printed.
--workers N (gateway only; AEGIS_GATEWAY_WORKERS) runs N gateway processes
on the same ports, default one per core when AEGIS_REDIS_URL is set, else 1;
more than one needs Redis for the shared replay cache.
Stops cleanly on SIGINT / SIGTERM.`

export async function runServe(argv: string[]): Promise<number> {
  try {
    return await serve(argv)
  } finally {
    // A cluster worker stays alive while its channel to the primary is open: whatever ended it (a clean stop, a bad configuration), let it exit.
    if (cluster.isWorker) process.disconnect?.()
  }
}

async function serve(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { role: { type: 'string' }, config: { type: 'string' }, workers: { type: 'string' }, help: { type: 'boolean' } },
    strict: true,
  })
  if (values.help) {
    process.stdout.write(`${HELP}\n`)
    return 0
  }
  const role = values.role as Role | undefined
  if (role !== 'control-plane' && role !== 'gateway' && role !== 'all') {
    process.stderr.write(`aegis serve: --role must be control-plane, gateway or all\n\n${HELP}\n`)
    return 2
  }
  const config = configFor(values.config)
  if (role === 'gateway') {
    if (isGatewayWorker()) return runGatewayWorker(config)
    const workers = gatewayWorkerCount(config, values.workers)
    if (workers > 1)
      return runGatewayPrimary(
        workers,
        (l) => process.stdout.write(`${l}\n`),
        (l) => process.stderr.write(`${l}\n`),
      )
  } else if (values.workers !== undefined) {
    process.stderr.write('aegis serve: --workers applies to --role gateway only\n')
    return 2
  }
  const running = await startRoles(config, role)
  if (running.controlPlane)
    process.stdout.write(
      `aegis: control plane on ${running.controlPlane.url}${running.controlPlane.tlsUrl ? ` and ${running.controlPlane.tlsUrl} (mTLS)` : ''}\n`,
    )
  if (running.gateway)
    process.stdout.write(`aegis: gateway on ${running.gateway.url}${running.gateway.tlsUrl ? ` and ${running.gateway.tlsUrl} (mTLS)` : ''}\n`)
  await closeOnSignal(running, (l) => process.stderr.write(`${l}\n`))
  return 0
}
