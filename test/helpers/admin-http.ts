/**
 * The admin API and the token endpoint of a control plane running in another
 * process, over real HTTP: what the multi-process tests call.
 */

/** `admin(method, path, body?)` against `${url}/admin/v1`: the parsed answer, or throws naming the status. */
export type AdminCall = (method: string, path: string, body?: unknown) => Promise<Record<string, unknown>>

/** Calls the admin API at `url()` (read per call: the URL may be known only once the process is up) with `token`. */
export function adminCaller(url: () => string, token: string): AdminCall {
  return async (method, path, body) => {
    const res = await fetch(`${url()}/admin/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const text = await res.text()
    if (!res.ok) throw new Error(`${method} ${path} answered ${res.status}: ${text}`)
    return text ? (JSON.parse(text) as Record<string, unknown>) : {}
  }
}

/** A client_credentials token for a bootstrap credential from the control plane at `url`. */
export async function clientCredentialsToken(url: string, cred: { client_id: string; client_secret: string }): Promise<string> {
  const res = await fetch(`${url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret }),
  })
  const body = (await res.json()) as { access_token?: string }
  if (!res.ok || typeof body.access_token !== 'string') throw new Error(`token endpoint answered ${res.status}: ${JSON.stringify(body)}`)
  return body.access_token
}
