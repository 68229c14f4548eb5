// Starts a real VS Code (code-server, installed by scripts/e2e/setup.sh) on a free loopback port,
// with throwaway user-data and extensions folders, and the extension under test loaded in
// development mode. Everything it starts carries a marker in its environment, so that `stop()`
// (or an exiting test process) can find and kill every descendant, including the ones that left
// the process group (the extension host's children, the engine processes).
//
// Manual use: `scripts/e2e/launch.sh [folder]` prints a URL and serves until Ctrl-C.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const CODE_SERVER_DIR =
  process.env.MODEL_LENS_CODE_SERVER_DIR ?? path.join(REPO_ROOT, '.cache', 'code-server');
const CODE_SERVER_ENTRY = path.join(
  CODE_SERVER_DIR,
  'node_modules',
  'code-server',
  'out',
  'node',
  'entry.js',
);
const SETUP_SCRIPT = path.join(REPO_ROOT, 'scripts', 'e2e', 'setup.sh');

export const SETUP_TIMEOUT_MS = 10 * 60_000;
export const HEALTHZ_TIMEOUT_MS = 30_000;
const HEALTHZ_POLL_MS = 100;
const STOP_GRACE_MS = 3_000;
/** Environment variable that marks every process of one run; its value is the run id. */
export const RUN_MARKER_ENV = 'MODEL_LENS_E2E_RUN';

const USER_SETTINGS = {
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'workbench.enableExperiments': false,
  'telemetry.telemetryLevel': 'off',
  'update.mode': 'none',
  'extensions.autoUpdate': false,
  'extensions.autoCheckUpdates': false,
  'extensions.ignoreRecommendations': true,
  // code-server cannot disable built-in extensions; these keep the git and TypeScript ones quiet
  // on a 2-core box (the scenarios open .ts files but need no diagnostics).
  'git.enabled': false,
  'typescript.validate.enable': false,
  'javascript.validate.enable': false,
  'typescript.tsserver.experimental.enableProjectDiagnostics': false,
  'chat.commandCenter.enabled': false,
  'window.restoreWindows': 'none',
  'files.hotExit': 'off',
  'editor.minimap.enabled': false,
};

export interface CodeServerOptions {
  /** Folder opened as the workspace. */
  folder: string;
  /** Extension root loaded in development mode (its package.json `main` must be built). */
  extensionDevelopmentPath?: string;
  /** Keep Workspace Trust on: the folder opens in Restricted Mode until trusted. */
  workspaceTrust?: boolean;
  /** Extra user settings merged over the defaults. */
  settings?: Record<string, unknown>;
  /** Environment overrides for code-server, which its extension host and engines inherit. */
  env?: Record<string, string>;
}

export interface CodeServer {
  port: number;
  /** The URL that opens `folder` with the extension loaded. */
  url: string;
  userDataDir: string;
  /** code-server's own stdout and stderr. */
  logFile: string;
  /** Marker value carried by every process this server started. */
  runId: string;
  /** Kills code-server and all its descendants, then removes the temp folders. */
  stop(): Promise<void>;
}

/** Runs setup.sh (a no-op once installed) so that a fresh clone needs no manual step. */
export function ensureCodeServerInstalled(): void {
  if (
    fs.existsSync(CODE_SERVER_ENTRY) &&
    fs.readdirSync(CODE_SERVER_DIR).some((f) => f.startsWith('.installed-'))
  ) {
    if (commandExists('chromium')) return;
  }
  const r = spawnSync('bash', [SETUP_SCRIPT], {
    stdio: ['ignore', 'inherit', 'inherit'],
    timeout: SETUP_TIMEOUT_MS,
  });
  if (r.status !== 0) {
    throw new Error(
      `scripts/e2e/setup.sh failed (exit ${r.status ?? r.signal}); run it by hand to see why`,
    );
  }
}

function commandExists(name: string): boolean {
  return (process.env.PATH ?? '')
    .split(path.delimiter)
    .some((d) => d && fs.existsSync(path.join(d, name)));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** The workbench URL that opens `folder` with `extensionDevelopmentPath` loaded, no packaging needed. */
export function workbenchUrl(
  port: number,
  folder: string,
  extensionDevelopmentPath?: string,
): string {
  const origin = `http://127.0.0.1:${port}`;
  let url = `${origin}/?folder=${encodeURIComponent(folder)}`;
  if (extensionDevelopmentPath) {
    // code-server rejects the --extensionDevelopmentPath flag; the workbench takes it from the URL.
    const payload = [
      ['extensionDevelopmentPath', `vscode-remote://127.0.0.1:${port}${extensionDevelopmentPath}`],
    ];
    url += `&payload=${encodeURIComponent(JSON.stringify(payload))}`;
  }
  return url;
}

export async function startCodeServer(opts: CodeServerOptions): Promise<CodeServer> {
  ensureCodeServerInstalled();
  const runId = `${process.pid}-${Date.now()}`;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'model-lens-e2e-'));
  const userDataDir = path.join(tmp, 'user-data');
  const extensionsDir = path.join(tmp, 'extensions');
  fs.mkdirSync(path.join(userDataDir, 'User'), { recursive: true });
  fs.mkdirSync(extensionsDir, { recursive: true });
  fs.writeFileSync(
    path.join(userDataDir, 'User', 'settings.json'),
    JSON.stringify({ ...USER_SETTINGS, ...opts.settings }, null, 2),
  );
  const logFile = path.join(tmp, 'code-server.log');
  const port = await freePort();
  const args = [
    CODE_SERVER_ENTRY,
    '--config',
    '/dev/null', // otherwise it writes ~/.config/code-server/config.yaml
    '--auth',
    'none',
    '--bind-addr',
    `127.0.0.1:${port}`,
    '--user-data-dir',
    userDataDir,
    '--extensions-dir',
    extensionsDir,
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-getting-started-override',
    '--ignore-last-opened',
    ...(opts.workspaceTrust ? [] : ['--disable-workspace-trust']),
  ];
  const out = fs.openSync(logFile, 'a');
  const child = spawn(process.execPath, args, {
    cwd: opts.folder,
    env: { ...process.env, OMP_NUM_THREADS: '1', ...opts.env, [RUN_MARKER_ENV]: runId },
    stdio: ['ignore', out, out],
    detached: true, // own process group, so one signal reaches the whole tree
  });
  fs.closeSync(out);
  const unregister = registerExitCleanup(runId, tmp);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await killTree(child, runId);
    unregister();
    if (!process.env.MODEL_LENS_E2E_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
  };
  try {
    await waitHealthy(port, child, logFile);
  } catch (err) {
    const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-2000) : '';
    await stop();
    throw new Error(`${(err as Error).message}\n--- code-server log ---\n${log}`);
  }
  return {
    port,
    url: workbenchUrl(port, opts.folder, opts.extensionDevelopmentPath),
    userDataDir,
    logFile,
    runId,
    stop,
  };
}

async function waitHealthy(port: number, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + HEALTHZ_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `code-server exited (${child.exitCode ?? child.signalCode}) before answering /healthz; log: ${logFile}`,
      );
    }
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`, {
        signal: AbortSignal.timeout(1_000),
      });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, HEALTHZ_POLL_MS));
  }
  throw new Error(
    `code-server did not answer http://127.0.0.1:${port}/healthz within ${HEALTHZ_TIMEOUT_MS} ms; log: ${logFile}`,
  );
}

/** Pids of live processes whose environment carries this run's marker. */
export function markedPids(runId: string): number[] {
  const needle = Buffer.from(`${RUN_MARKER_ENV}=${runId}\0`);
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${pid}/environ`).includes(needle)) pids.push(pid);
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

function signalAll(child: ChildProcess, runId: string, signal: NodeJS.Signals): void {
  if (child.pid) {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // group already gone
    }
  }
  for (const pid of markedPids(runId)) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

async function killTree(child: ChildProcess, runId: string): Promise<void> {
  signalAll(child, runId, 'SIGTERM');
  const deadline = Date.now() + STOP_GRACE_MS;
  while (Date.now() < deadline && markedPids(runId).length > 0)
    await new Promise((r) => setTimeout(r, 100));
  signalAll(child, runId, 'SIGKILL');
}

/** If the test process dies first (assertion, Ctrl-C, timeout), nothing of this run outlives it. */
function registerExitCleanup(runId: string, tmp: string): () => void {
  const onExit = (): void => {
    for (const pid of markedPids(runId)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (!process.env.MODEL_LENS_E2E_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
  };
  // `on`, not `once`: removing the listener restores the default action, and a second signal (a
  // Ctrl-C sent to the whole group, `timeout`) would then kill us halfway through the cleanup.
  const onSignal = (signal: NodeJS.Signals): void => {
    onExit();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.on('exit', onExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('exit', onExit);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}

async function main(): Promise<void> {
  const folder = path.resolve(process.argv[2] ?? path.join(REPO_ROOT, 'examples'));
  const server = await startCodeServer({ folder, extensionDevelopmentPath: REPO_ROOT });
  console.log(`code-server ${server.port}: ${server.url}`);
  console.log(`user data: ${server.userDataDir} (Ctrl-C stops it and everything it started)`);
  // The exit cleanup registered by startCodeServer handles Ctrl-C; keep the loop alive until then.
  setInterval(() => undefined, 60_000);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
