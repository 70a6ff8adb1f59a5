/**
 * Databases at an older schema version, filled the way that release wrote
 * them, for the upgrade tests: the next open of the store must migrate them
 * and keep their data.
 */
import type BetterSqlite from 'better-sqlite3'
import type pg from 'pg'

/** Migrates a new SQLite file at `path` to `version` (1 through `version`), lets `fill` write rows, closes it; resolves with the versions applied. */
export async function sqliteAtVersion(path: string, version: number, fill: (db: BetterSqlite.Database) => void): Promise<number[]> {
  const { default: Database } = await import('better-sqlite3')
  const { SQLITE_MIGRATIONS, migrateSqlite } = await import('../../src/store/sqlite/index.js')
  const db = new Database(path)
  try {
    const applied = migrateSqlite(
      db,
      SQLITE_MIGRATIONS.filter((m) => m.version <= version),
    )
    fill(db)
    return applied
  } finally {
    db.close()
  }
}

/** The same for the PostgreSQL schema at `url` (a fresh one): migrations 1 through `version`, then `fill` on its own client. */
export async function postgresAtVersion(url: string, version: number, fill: (c: pg.Client) => Promise<void>): Promise<number[]> {
  const { default: pgModule } = await import('pg')
  const { POSTGRES_MIGRATIONS, migratePostgres } = await import('../../src/store/postgres/index.js')
  const c = new pgModule.Client({ connectionString: url })
  await c.connect()
  try {
    const applied = await migratePostgres(
      c,
      POSTGRES_MIGRATIONS.filter((m) => m.version <= version),
    )
    await fill(c)
    return applied
  } finally {
    await c.end()
  }
}
