/**
 * A PostgreSQL that goes away while the store holds a client (an advisory
 * lock for key maintenance, a transaction) must fail that call, not the
 * process: the pool only listens for errors on idle clients, and an
 * unhandled `error` event on a held one used to end the control plane.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PrivatePostgres, skipWithoutInitdb } from '../../helpers/postgres-server.js'
import { openPostgresStore } from '../../../src/store/postgres/store.js'

const noBinaries = skipWithoutInitdb()

test('a database stopped while a lock is held fails the locked section, and the process lives on', { skip: noBinaries }, async () => {
  const pg = await PrivatePostgres.start()
  const uncaught: unknown[] = []
  const onUncaught = (err: unknown): void => {
    uncaught.push(err)
  }
  process.on('uncaughtException', onUncaught)
  try {
    const store = await openPostgresStore(pg.url)
    let stopped!: () => void
    const whileHeld = new Promise<void>((resolve) => {
      stopped = resolve
    })
    const section = store.tryWithLock('lost-connection-test', async () => {
      await pg.stop('immediate')
      stopped()
      // Give the driver time to see the connection end while the lock's client is still checked out.
      await new Promise((r) => setTimeout(r, 500))
      return 'done'
    })
    await whileHeld
    // The section's own work finished; releasing the lock fails, which is the caller's to see, not the process's.
    await section.then(
      () => {},
      () => {},
    )
    assert.deepEqual(uncaught, [], 'no uncaught error from a client lost while held')
    await pg.start()
    // The pool recovers: the next locked section runs on a fresh connection.
    const again = await store.tryWithLock('lost-connection-test', async () => 'ran')
    assert.deepEqual(again, { ran: true, value: 'ran' })
    await store.close()
  } finally {
    process.off('uncaughtException', onUncaught)
    await pg.close()
  }
})
