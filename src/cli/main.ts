import { parseArgs } from 'node:util'
import { loadConfig, ConfigError } from '../config/load.js'
import type { AegisConfig } from '../config/schema.js'
import type { CliContext } from './context.js'

const USAGE = `aegis — runtime identity and authorization for AI agents

Usage:
  aegis dev                      control plane (:7400) + gateway (:7401) on embedded storage,
                                 prints an admin token and a demo agent
  aegis serve --role ROLE        production entry; ROLE = control-plane | gateway | all
              [--config FILE]
  aegis token mint --tenant T --agent A [--scope S] [--audience AUD] [--ttl SECONDS]
  aegis keys list|rotate [--emergency]
  aegis audit verify [--jwks KEYS] [--file EXPORT] [--heads FILE] | export [--out FILE] | pin-keys --jwks KEYS
  aegis policy test DIR | eval | validate FILE
  aegis help [COMMAND]            this text, or COMMAND's own usage (same as aegis COMMAND --help)

Every setting also reads from AEGIS_* environment variables (README "Configuration").`

const COMMANDS = ['dev', 'serve', 'token', 'keys', 'audit', 'policy'] as const

/** Loads configuration for a command, printing every problem at once on failure. */
export function configFor(file: string | undefined, overrides?: Record<string, unknown>): AegisConfig {
  return loadConfig({ file: file ?? process.env.AEGIS_CONFIG, overrides })
}

function context(config: AegisConfig): CliContext {
  return { config, out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) }
}

/** Splits a leading `--config FILE` off any command's arguments. */
function takeConfigFlag(argv: string[]): { file?: string; rest: string[] } {
  const rest: string[] = []
  let file: string | undefined
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--config') {
      file = argv[++i]
      continue
    }
    if (argv[i]?.startsWith('--config=')) {
      file = argv[i]!.slice('--config='.length)
      continue
    }
    rest.push(argv[i]!)
  }
  return { file, rest }
}

/** Entry point of the `aegis` command; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv
  try {
    switch (command) {
      case 'help': {
        const topic = args[0]
        if (topic === undefined) {
          process.stdout.write(`${USAGE}\n`)
          return 0
        }
        if (!(COMMANDS as readonly string[]).includes(topic)) {
          process.stderr.write(`aegis help: unknown command "${topic}"\n\n${USAGE}\n`)
          return 2
        }
        return await main([topic, '--help'])
      }
      case undefined:
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`)
        return 0
      case 'dev': {
        const { runDev } = await import('./commands/dev.js')
        return await runDev(args)
      }
      case 'serve': {
        const { runServe } = await import('./commands/serve.js')
        return await runServe(args)
      }
      case 'token': {
        const { file, rest } = takeConfigFlag(args)
        const { tokenCommand } = await import('./commands/token.js')
        return await tokenCommand(rest, context(configFor(file)))
      }
      case 'keys': {
        const { file, rest } = takeConfigFlag(args)
        const { keysCommand } = await import('./commands/keys.js')
        return await keysCommand(rest, context(configFor(file)))
      }
      case 'audit': {
        const { file, rest } = takeConfigFlag(args)
        const { auditCommand } = await import('./commands/audit.js')
        return await auditCommand(rest, context(configFor(file)))
      }
      case 'policy': {
        const { file, rest } = takeConfigFlag(args)
        const { policyCommand } = await import('./commands/policy.js')
        return await policyCommand(rest, context(configFor(file)))
      }
      default:
        process.stderr.write(`aegis: unknown command "${command}"\n\n${USAGE}\n`)
        return 2
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`aegis: ${err.message}\n`)
      return 2
    }
    throw err
  }
}

export { parseArgs }
