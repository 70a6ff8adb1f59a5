import type { AegisConfig } from '../config/schema.js'

/**
 * What a CLI command gets: the loaded configuration and two line writers
 * (stdout, stderr), so tests can capture output without touching the process.
 */
export interface CliContext {
  config: AegisConfig
  /** Writes one line to standard output. */
  out: (line: string) => void
  /** Writes one line to standard error. */
  err: (line: string) => void
}
