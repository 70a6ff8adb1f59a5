/**
 * Chooses the control plane's store once, from configuration: no
 * `databaseUrl` → embedded SQLite at `<dataDir>/aegis.db`, else PostgreSQL.
 */
import { mkdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { AegisConfig } from '../config/schema.js'
import type { Logger } from '../observability/logger.js'
import { storeError } from './sql/rows.js'
import { openPostgresStore } from './postgres/store.js'
import { openSqliteStore } from './sqlite/store.js'
import type { Store } from './types.js'

export { openSqliteStore, type SqliteStoreOptions } from './sqlite/store.js'
export { openPostgresStore, type PostgresStoreOptions } from './postgres/store.js'
export type * from './types.js'

/**
 * Opens the store the configuration names and applies pending migrations.
 * `shortLived`: for a command that exits soon after (the CLI). Rejects
 * with an AegisError (never a driver error) when it cannot.
 */
export async function openStore(config: AegisConfig, logger: Logger, opts: { shortLived?: boolean } = {}): Promise<Store> {
  if (config.databaseUrl) {
    const store = await openPostgresStore(config.databaseUrl, { logger })
    logger.info({ store: 'postgres', host: safeHost(config.databaseUrl) }, 'store opened')
    return store
  }
  try {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 })
    if (process.platform !== 'win32' && (statSync(config.dataDir).mode & 0o077) !== 0) {
      logger.warn({ dataDir: config.dataDir }, 'data directory is readable by other users; chmod 700 it')
    }
  } catch (err) {
    throw storeError(err, 'data directory')
  }
  const path = join(config.dataDir, 'aegis.db')
  // A short-lived command (the CLI) starts no SQLite threads.
  const store = await openSqliteStore(path, { threads: opts.shortLived !== true })
  logger.info({ store: 'sqlite', path }, 'store opened')
  return store
}

/** Host and database of a URL, never its credentials. */
function safeHost(url: string): string {
  try {
    const u = new URL(url)
    return `${u.hostname}:${u.port || '5432'}${u.pathname}`
  } catch {
    return 'unparseable'
  }
}
