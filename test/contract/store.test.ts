import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openPostgresStore, openSqliteStore, type Store } from '../../src/store/index.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../helpers/services.js'
import { storeContract } from './store.js'

storeContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-store-'))
  const path = join(dir, 'aegis.db')
  const opened: Store[] = []
  const open = async (): Promise<Store> => {
    const s = await openSqliteStore(path)
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
})

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
