// The one way Model Lens kills a child and everything it started. Children that may start
// their own (engines, nvidia-smi wrappers) are spawned `detached`, which on POSIX makes them
// process-group leaders, so signalling the group reaches a wrapper script's children too.
import type { ChildProcess } from 'node:child_process';

const IS_WINDOWS = process.platform === 'win32';

/** Signals the child's process group (the child alone on Windows or when it leads none). */
export function killProcessGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  if (!IS_WINDOWS) {
    try {
      process.kill(-child.pid, signal);
      return;
    } catch {
      // Not a group leader (spawned elsewhere) or already gone: fall back to the child alone.
    }
  }
  try {
    child.kill(signal);
  } catch {
    // Gone between the check and the signal.
  }
}
