// Reading an engine's last words: how it ended (exit code, signal, what it printed) turned into
// a sentence that names the user's file and, where the engine's stderr says it, the line.
// Pure functions over text, so they are unit-tested without starting an engine.
import type { SourceLocation } from '../protocol/types';
import { describeExit } from '../shared/processExit';

// The engines' watchdogs say why they ended the engine on stderr (python watchdog.py,
// src/engine/pipeWorker.ts); exit codes alone are ambiguous, since user code may exit with any.

/** Lines of engine output shown under an error when nothing more specific was found. */
const TAIL_LINES = 12;
/** Lines kept from a Python traceback or faulthandler dump. */
const DUMP_LINES = 24;

const V8_OOM_RE = /FATAL ERROR:.*(?:heap out of memory|Allocation failed).*$/m;
const PY_FATAL_RE = /^Fatal Python error: .*$/m;
/** What an engine's watchdog prints when it stops the engine (python watchdog.py, pipeWorker.ts). */
const OVER_LIMIT_RE = /went over its memory limit of (\d+) MB \((\d+) MB in use\)/;
const WATCHDOG_LINE_RE = /^model-lens engine: .*$/m;
const DESYNC_RE = /^model-lens engine: protocol desync: /m;
const FAULTHANDLER_FRAME_RE = /^\s+File "(.+)", line (\d+) in (.+)$/;
const THREAD_RE = /^(?:Current thread|Thread) 0x[0-9a-f]+ .*\(most recent call first\):$/;

/** A frame in the engine itself, the standard library or an installed package: not the user's. */
function isLibraryPath(file: string): boolean {
  return (
    file.startsWith('<') ||
    /[\\/](?:site|dist)-packages[\\/]/.test(file) ||
    /[\\/]model_lens_engine[\\/]/.test(file) ||
    /[\\/]lib[\\/]python\d+(?:\.\d+)?[\\/]/.test(file) ||
    /[\\/]node_modules[\\/]/.test(file)
  );
}

/**
 * The user's innermost frame in a faulthandler dump (a segfault, or the stack dump the client
 * asks for when a request overruns). Prefers the thread that runs requests (the one in the
 * engine's dispatch loop) over helper threads.
 */
export function userFrameOfStackDump(text: string): SourceLocation | undefined {
  const threads: { frames: SourceLocation[]; engine: boolean }[] = [];
  let current: { frames: SourceLocation[]; engine: boolean } | undefined;
  for (const line of text.split('\n')) {
    if (THREAD_RE.test(line.trim()) || /^Stack \(most recent call first\):$/.test(line.trim())) {
      current = { frames: [], engine: false };
      threads.push(current);
      continue;
    }
    const m = FAULTHANDLER_FRAME_RE.exec(line);
    if (!m || !current) continue;
    if (/[\\/]model_lens_engine[\\/]dispatch\.py$/.test(m[1])) current.engine = true;
    current.frames.push({ file: m[1], line: Number(m[2]), function: m[3].trim() });
  }
  // The last dump is the freshest; within it, the request thread first.
  const ordered = [...threads].reverse().sort((a, b) => Number(b.engine) - Number(a.engine));
  for (const t of ordered) {
    const hit = t.frames.find((f) => !isLibraryPath(f.file));
    if (hit) return hit;
  }
  return undefined;
}

/** The part of the engine's last output that explains its end, not 12 lines of native stack. */
export function explainingTail(stderrTail: string): string {
  const oom = V8_OOM_RE.exec(stderrTail);
  if (oom) return oom[0].trim();
  const watchdog = WATCHDOG_LINE_RE.exec(stderrTail);
  if (watchdog) return watchdog[0].trim();
  const fatal = PY_FATAL_RE.exec(stderrTail);
  if (fatal) {
    return stderrTail
      .slice(fatal.index)
      .split('\n')
      .filter((l) => l.trim())
      .slice(0, DUMP_LINES)
      .join('\n');
  }
  const tb = stderrTail.lastIndexOf('Traceback (most recent call last):');
  if (tb >= 0) return stderrTail.slice(tb).trim().split('\n').slice(-DUMP_LINES).join('\n');
  return stderrTail.trim().split('\n').slice(-TAIL_LINES).join('\n');
}

export interface ExitFacts {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderrTail: string;
  /** The memory ceiling the engine ran under, if any. */
  memoryLimitMB?: number;
}

/** One clause for how the engine ended: "ran out of memory", "was killed by SIGSEGV", ... */
export function howItEnded(e: ExitFacts): string {
  if (V8_OOM_RE.test(e.stderrTail)) {
    return `ran out of memory (the JavaScript heap${e.memoryLimitMB ? ` limit is ${e.memoryLimitMB} MB` : ' is full'})`;
  }
  const over = OVER_LIMIT_RE.exec(e.stderrTail);
  if (over) {
    return (
      `ran out of memory: it went over its memory limit of ${over[1]} MB (${over[2]} MB in use) ` +
      'and was stopped (raise the limit with --memory-limit or modelLens.engineMemoryLimitMB)'
    );
  }
  if (DESYNC_RE.test(e.stderrTail)) return 'lost track of the protocol stream and exited';
  if (
    e.signal === 'SIGKILL' &&
    e.memoryLimitMB === undefined &&
    /MemoryError|out of memory/i.test(e.stderrTail)
  ) {
    return 'was killed by SIGKILL after running out of memory';
  }
  if (e.signal === 'SIGSEGV') return 'crashed with a segmentation fault (SIGSEGV)';
  if (PY_FATAL_RE.test(e.stderrTail) && /Segmentation fault/.test(e.stderrTail) && !e.signal) {
    return 'crashed with a segmentation fault';
  }
  return describeExit(e);
}
