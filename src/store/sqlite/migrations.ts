/**
 * Versioned schema of the embedded store: the shared migrations in SQLite's
 * dialect, and how they are applied. Each migration runs once, in its own
 * transaction, recorded in `schema_migrations`.
 */
import type Database from 'better-sqlite3'
import { sqlMigrations, type Migration } from '../sql/migrations.js'

export type { Migration }

/** SQLite's side of the shared schema (../sql/migrations.ts). */
export const SQLITE_MIGRATIONS: readonly Migration[] = sqlMigrations({
  int: 'INTEGER',
  bool: 'INTEGER',
  // AUTOINCREMENT: a purged seq is never handed out again (sqlite_sequence keeps the highest).
  serialKey: 'INTEGER PRIMARY KEY AUTOINCREMENT',
  strict: ' STRICT',
  nowMs: "CAST(strftime('%s', 'now') AS INTEGER) * 1000",
})

/**
 * Applies every migration not yet recorded. BEGIN IMMEDIATE takes the write
 * lock first, so two processes opening the same file apply each version once.
 */
export function migrateSqlite(db: Database.Database, migrations: readonly Migration[] = SQLITE_MIGRATIONS): number[] {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)')
  const applied: number[] = []
  const has = db.prepare<[number], { version: number }>('SELECT version FROM schema_migrations WHERE version = ?')
  const record = db.prepare<[number, string, number]>('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    db.transaction(() => {
      if (has.get(m.version)) return
      db.exec(m.sql)
      record.run(m.version, m.name, Date.now())
      applied.push(m.version)
    }).immediate()
  }
  return applied
}
