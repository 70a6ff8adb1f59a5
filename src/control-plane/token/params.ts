/**
 * Reading RFC 6749 form parameters: form-encoded bodies only, each parameter
 * at most once (§3.2) unless the spec allows repeats (RFC 8707 `resource`).
 */
import type { FastifyRequest } from 'fastify'
import { errorFor, InvalidRequest } from '../../errors.js'

/** A parsed `application/x-www-form-urlencoded` body (repeated keys become arrays). */
export type FormBody = Record<string, string | string[] | undefined>

const FORM = 'application/x-www-form-urlencoded'

/**
 * The request's form body. JSON or any other media type is refused with
 * `invalid_request`: RFC 6749 §3.2 requires form encoding.
 */
export function readForm(request: FastifyRequest): FormBody {
  const type = request.headers['content-type']
  if (typeof type !== 'string' || type.slice(0, FORM.length).toLowerCase() !== FORM) {
    throw new InvalidRequest(`the request body must be ${FORM}`)
  }
  const body = request.body
  if (body === undefined || body === null) return Object.create(null) as FormBody
  if (typeof body !== 'object') throw new InvalidRequest('malformed form body')
  return body as FormBody
}

/** A parameter sent at most once, at most `maxLength` characters; undefined when absent or empty. */
export function single(body: FormBody, name: string, maxLength = 2048): string | undefined {
  const v = body[name]
  if (v === undefined) return undefined
  if (Array.isArray(v)) throw new InvalidRequest(`parameter ${name} must not be repeated`)
  if (v.length > maxLength) throw new InvalidRequest(`parameter ${name} is too long`)
  return v === '' ? undefined : v
}

/** A parameter that may repeat (RFC 8707 §2): at most `maxCount` values of at most `maxLength` characters. */
export function repeated(
  body: FormBody,
  name: string,
  maxCount: number,
  maxLength: number,
  code: 'invalid_request' | 'invalid_target' = 'invalid_request',
): string[] {
  const v = body[name]
  if (v === undefined) return []
  const values = Array.isArray(v) ? v : [v]
  if (values.length > maxCount) throw errorFor(code, `at most ${maxCount} ${name} values`)
  for (const x of values) {
    if (x === '' || x.length > maxLength) throw errorFor(code, `invalid ${name} value`)
  }
  return values
}
