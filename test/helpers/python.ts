/**
 * Running the Python SDK's tests (clients/python) from the Node suite with
 * Debian's /usr/bin/python3 and its python3-pytest, python3-cryptography and
 * python3-httpx (.ci/run installs them). Without them a test skips with a
 * message saying what to install; with AEGIS_REQUIRE_SERVICES=1 it fails.
 */
import { type ProcessResult, runProcess } from './run-process.js'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')
export const PYTHON_DIR = resolve(ROOT, 'clients/python')
export const PYTHON = process.env.AEGIS_TEST_PYTHON ?? '/usr/bin/python3'
const REQUIRED = process.env.AEGIS_REQUIRE_SERVICES === '1'

let probed: string | false | undefined

/** A skip reason when the Python toolchain is missing (throws when required); false when usable. */
export function skipWithoutPython(): string | false {
  if (probed === undefined) {
    let msg: string | false = false
    if (!existsSync(PYTHON)) msg = `${PYTHON} not found: install Debian's python3`
    else {
      const r = spawnSync(PYTHON, ['-c', 'import sys, pytest, cryptography, httpx; assert sys.version_info >= (3, 11)'], { encoding: 'utf8' })
      if (r.status !== 0)
        msg = `${PYTHON} lacks pytest, cryptography or httpx (or is older than 3.11): apt-get install -y python3-cryptography python3-pytest python3-httpx`
    }
    probed = msg
  }
  if (probed && REQUIRED) throw new Error(`AEGIS_REQUIRE_SERVICES=1 and ${probed}`)
  return probed
}

/** The environment a Python child sees: no AEGIS_* from the parent, no bytecode written into the repository. */
export function pythonEnv(extra: Record<string, string> = {}): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('AEGIS_')) out[k] = v
  return { ...out, PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1', ...extra }
}

/** Runs `python3 <args>` in clients/python; resolves with its exit code and output. */
export function runPython(args: string[], env: Record<string, string>, timeoutMs: number, input?: string): Promise<ProcessResult> {
  return runProcess(PYTHON, args, { cwd: PYTHON_DIR, env: pythonEnv(env), timeoutMs, input: input ?? '' })
}
