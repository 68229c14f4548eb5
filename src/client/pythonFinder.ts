import { execFile } from 'node:child_process';

/**
 * The probe does not import torch (1–2 s on a quiet machine, far more on a loaded one, and the
 * engine imports it again right after): it finds the package and reads its version from the
 * installed metadata. A torch that is installed but fails to import is reported by the engine
 * itself (engine/initialize says why). Python start-up alone can still be slow on a loaded box.
 */
const PROBE_TIMEOUT_MS = 60_000;
const MIN_PYTHON: [number, number] = [3, 8];

export interface PythonCandidate {
  path: string;
  /** Where the candidate came from, for the error message. */
  origin: string;
}

export interface PythonProbe {
  path: string;
  origin: string;
  ok: boolean;
  /** Why it cannot be used, when `ok` is false. */
  reason?: string;
  pythonVersion?: string;
  torchVersion?: string;
  executable?: string;
  /** Candidates before this one that could not be used, with why. */
  skipped?: PythonProbe[];
}

export class PythonNotFoundError extends Error {
  constructor(readonly probes: PythonProbe[]) {
    super(
      'No Python interpreter with PyTorch was found. Tried:\n' +
        probes.map((p) => `  - ${p.path} (${p.origin}): ${p.reason}`).join('\n') +
        '\nSet `modelLens.pythonPath` (editor) or pass `--python PATH` (CLI) to an interpreter where `import torch` works.',
    );
    this.name = 'PythonNotFoundError';
  }
}

const PROBE_SCRIPT = [
  'import sys, json',
  'out = {"python": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable}',
  'try:',
  '    import importlib.util',
  '    spec = importlib.util.find_spec("torch")',
  '    if spec is None:',
  '        out["torchError"] = "ModuleNotFoundError: No module named \'torch\'"',
  '    else:',
  '        try:',
  '            import importlib.metadata',
  '            out["torch"] = importlib.metadata.version("torch")',
  '        except Exception:',
  '            out["torch"] = "unknown version"',
  'except Exception as e:',
  '    out["torchError"] = "%s: %s" % (type(e).__name__, e)',
  'print(json.dumps(out))',
].join('\n');

/** Runs one interpreter and says whether it can host the PyTorch engine. */
export function probePython(candidate: PythonCandidate): Promise<PythonProbe> {
  return new Promise((resolve) => {
    execFile(
      candidate.path,
      ['-c', PROBE_SCRIPT],
      {
        timeout: PROBE_TIMEOUT_MS,
        // Our own folder and -P: a workspace json.py must not shadow the stdlib in the probe.
        cwd: __dirname,
        env: {
          ...process.env,
          OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '1',
          PYTHONSAFEPATH: '1',
        },
      },
      (err, stdout, stderr) => {
        const base = { path: candidate.path, origin: candidate.origin };
        if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
          return resolve({ ...base, ok: false, reason: 'no such file or command' });
        }
        if (err && (err as NodeJS.ErrnoException).code === 'EACCES') {
          return resolve({ ...base, ok: false, reason: 'not executable' });
        }
        if (err && err.killed) {
          return resolve({
            ...base,
            ok: false,
            reason: `did not answer within ${PROBE_TIMEOUT_MS / 1000} s`,
          });
        }
        let info: { python?: string; executable?: string; torch?: string; torchError?: string };
        try {
          info = JSON.parse(stdout.trim().split('\n').pop() ?? '');
        } catch {
          const detail = (stderr || String(err ?? '')).trim().split('\n').pop() ?? '';
          return resolve({
            ...base,
            ok: false,
            reason: `not a working Python 3 (${detail || 'no output'})`,
          });
        }
        const [maj, min] = (info.python ?? '0.0').split('.').map(Number);
        if (maj < MIN_PYTHON[0] || (maj === MIN_PYTHON[0] && min < MIN_PYTHON[1])) {
          return resolve({
            ...base,
            ok: false,
            pythonVersion: info.python,
            reason: `Python ${info.python} is too old (need ${MIN_PYTHON.join('.')}+)`,
          });
        }
        if (!info.torch) {
          return resolve({
            ...base,
            ok: false,
            pythonVersion: info.python,
            executable: info.executable,
            reason: `Python ${info.python} has no torch (${info.torchError})`,
          });
        }
        resolve({
          ...base,
          ok: true,
          pythonVersion: info.python,
          torchVersion: info.torch,
          executable: info.executable,
        });
      },
    );
  });
}

/**
 * Interpreters in the order the user expects them to be honoured: an explicit setting or flag,
 * then the editor's active interpreter, then the usual names on PATH.
 */
export const DEFAULT_PYTHONS: readonly string[] = ['python3', '/usr/bin/python3', 'python'];

export function pythonCandidates(
  explicit?: string,
  editorInterpreter?: string,
  defaults: readonly string[] = DEFAULT_PYTHONS,
): PythonCandidate[] {
  const list: PythonCandidate[] = [];
  if (explicit) list.push({ path: explicit, origin: 'configured' });
  if (editorInterpreter) list.push({ path: editorInterpreter, origin: 'Python extension' });
  for (const p of defaults) list.push({ path: p, origin: 'default' });
  const seen = new Set<string>();
  return list.filter((c) => !seen.has(c.path) && seen.add(c.path));
}

const found = new Map<string, Promise<PythonProbe>>();

/**
 * The first candidate that imports torch. An explicitly configured interpreter that fails is
 * still reported, but the search goes on so a typo does not hide a working default.
 */
export function findPython(
  explicit?: string,
  editorInterpreter?: string,
  defaults: readonly string[] = DEFAULT_PYTHONS,
): Promise<PythonProbe> {
  const key = [explicit ?? '', editorInterpreter ?? '', ...defaults].join('\0');
  let pending = found.get(key);
  if (!pending) {
    pending = (async () => {
      const probes: PythonProbe[] = [];
      for (const c of pythonCandidates(explicit, editorInterpreter, defaults)) {
        const probe = await probePython(c);
        if (probe.ok) return { ...probe, skipped: probes };
        probes.push(probe);
      }
      throw new PythonNotFoundError(probes);
    })();
    found.set(key, pending);
    // A failed search is retried next time: the user may install torch meanwhile.
    pending.catch(() => found.delete(key));
  }
  return pending;
}
