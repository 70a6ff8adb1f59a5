/** Resolves what `fn` returns, or rejects with what it throws: a synchronous better-sqlite3 call behind the store's async interface. */
export function settle<R>(fn: () => R): Promise<R> {
  try {
    return Promise.resolve(fn())
  } catch (err) {
    return Promise.reject(err)
  }
}
