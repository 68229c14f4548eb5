// How an engine process is started: command, arguments, environment and working folder for
// each engine kind, and the limits it is given.
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorCodes } from '../protocol/errors';
import { EngineError, type EngineStartOptions } from './engineClient';
import { packageRoot } from './packageRoot';
import { findPython } from './pythonFinder';

/** Default engine memory ceiling: a share of the machine, so a runaway model cannot take it down. */
export const DEFAULT_MEMORY_LIMIT_FRACTION = 0.75;
/** Env names the engines read (python/model_lens_engine/watchdog.py, src/engine/protocolPipe.ts). */
export const PARENT_PID_ENV = 'MODEL_LENS_PARENT_PID';
export const MEMORY_LIMIT_ENV = 'MODEL_LENS_MEMORY_LIMIT_MB';
/** The TF.js engine speaks the protocol on this fd, so stray writes to fd 1 cannot corrupt it. */
export const TFJS_PROTOCOL_FD = 3;

export function defaultMemoryLimitMB(): number {
  return Math.round((os.totalmem() * DEFAULT_MEMORY_LIMIT_FRACTION) / 2 ** 20);
}

export async function engineCommand(
  options: EngineStartOptions,
  memoryLimitMB: number,
): Promise<{
  command: string;
  args: string[];
  env: Record<string, string>;
  notes: string[];
  cwd?: string;
}> {
  const root = packageRoot();
  if (options.kind === 'tfjs') {
    // In the extension host process.execPath is VS Code's Electron; this makes it a plain Node.
    // The V8 heap gets the memory ceiling; the engine watches the whole process's size itself.
    return {
      command: process.execPath,
      args: [
        ...(memoryLimitMB > 0 ? [`--max-old-space-size=${memoryLimitMB}`] : []),
        path.join(root, 'dist', 'engine.js'),
      ],
      env: { ELECTRON_RUN_AS_NODE: '1' },
      notes: [],
    };
  }
  const python = await findPython(options.python, options.editorPython).catch((err: Error) => {
    throw new EngineError(err.message, ErrorCodes.environment, {
      kind: 'runtimeMissing',
      hint: 'Set modelLens.pythonPath or pass --python to an interpreter where `import torch` works.',
    });
  });
  const enginePath = path.join(root, 'python');
  const pythonPath = [enginePath, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter);
  return {
    command: python.executable ?? python.path,
    args: ['-u', '-m', 'model_lens_engine'],
    // The engine starts in its own folder with PYTHONSAFEPATH (-P), so a workspace `json.py` or
    // `threading.py` cannot shadow the standard library before initialize; it moves to the
    // workspace folder (options.cwd) when asked, after its own imports.
    cwd: enginePath,
    env: {
      PYTHONPATH: pythonPath,
      PYTHONUNBUFFERED: '1',
      PYTHONDONTWRITEBYTECODE: '1',
      PYTHONSAFEPATH: '1',
    },
    notes: (python.skipped ?? [])
      .filter((p) => p.origin !== 'default')
      .map(
        (p) =>
          `${p.origin} interpreter ${p.path} skipped: ${p.reason}; using ${python.executable ?? python.path}`,
      ),
  };
}
