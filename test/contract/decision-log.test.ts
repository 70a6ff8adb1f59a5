import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openPostgresStore, openSqliteStore } from '../../src/store/index.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../helpers/services.js'
import { decisionLogContract } from './decision-log.js'

const sqlite =
  (opts: { appendThread?: boolean } = {}) =>
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'aegis-decisions-'))
    const store = await openSqliteStore(join(dir, 'aegis.db'), opts)
    return {
      store,
      cleanup: async () => {
        await store.close()
        rmSync(dir, { recursive: true, force: true })
      },
    }
  }

decisionLogContract('sqlite', sqlite())
// Batches written on the store's own connection, as when the append thread cannot start.
decisionLogContract('sqlite, in place', sqlite({ appendThread: false }))

const pgSkip = await skipWithoutPostgres()
decisionLogContract(
  'postgres',
  async () => {
    const schema = await freshPostgresSchema()
    try {
      const store = await openPostgresStore(schema.url)
      return {
        store,
        cleanup: async () => {
          await store.close()
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
