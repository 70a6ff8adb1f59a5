import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openPostgresStore, openSqliteStore, type Store } from '../../src/store/index.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../helpers/services.js'
import type { SqliteStoreOptions } from '../../src/store/sqlite/store.js'
import { storeContract, type StoreHandle } from './store.js'

/** A file store in its own directory; `reopen` opens more connections to it. */
async function sqliteHandle(opts: SqliteStoreOptions = {}): Promise<StoreHandle> {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-store-'))
  const path = join(dir, 'aegis.db')
  const opened: Store[] = []
  const open = async (): Promise<Store> => {
    const s = await openSqliteStore(path, opts)
    opened.push(s)
    return s
  }
  const store = await open()
  return {
    store,
    reopen: open,
    cleanup: async () => {
      for (const s of opened) await s.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

storeContract('sqlite', () => sqliteHandle())
// Audit batches written on the store's own connection, as when the audit thread cannot start.
storeContract('sqlite, audit in place', () => sqliteHandle({ appendThread: false }))

const pgSkip = await skipWithoutPostgres()
storeContract(
  'postgres',
  async () => {
    const schema = await freshPostgresSchema()
    const opened: Store[] = []
    const open = async (): Promise<Store> => {
      const s = await openPostgresStore(schema.url)
      opened.push(s)
      return s
    }
    try {
      const store = await open()
      return {
        store,
        reopen: open,
        cleanup: async () => {
          for (const s of opened) await s.close()
          await schema.drop()
        },
      }
    } catch (err) {
      await schema.drop()
      throw err
    }
  },
  { skip: pgSkip },
)
