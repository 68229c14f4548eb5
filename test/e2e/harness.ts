// Shared setup for the end-to-end tests and bench/e2eEditor.ts: a built extension, a code-server
// serving a workspace with it loaded, and a browser on the workbench, all torn down together.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { REPO_ROOT, startCodeServer } from './codeServer';
import type { CodeServer, CodeServerOptions } from './codeServer';
import { launchBrowser, withTimeout, Workbench } from './workbench';

export const BUILD_TIMEOUT_MS = 120_000;
/** The extension loaded in development mode; another root (e.g. an unpacked VSIX) can be tried. */
export const EXTENSION_ROOT = process.env.MODEL_LENS_E2E_EXTENSION ?? REPO_ROOT;
const TEARDOWN_TIMEOUT_MS = 15_000;

/** Rebuilds dist/ when any source is newer than dist/extension.js, so the test sees current code. */
export function ensureBuilt(): void {
  if (EXTENSION_ROOT !== REPO_ROOT) return;
  const bundle = path.join(REPO_ROOT, 'dist', 'extension.js');
  const builtAt = fs.existsSync(bundle) ? fs.statSync(bundle).mtimeMs : 0;
  const newest = Math.max(
    ...['src', 'webview'].map((d) => newestMtime(path.join(REPO_ROOT, d))),
    fs.statSync(path.join(REPO_ROOT, 'package.json')).mtimeMs,
  );
  if (builtAt >= newest) return;
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'esbuild.js')], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
    timeout: BUILD_TIMEOUT_MS,
  });
  if (r.status !== 0) throw new Error(`npm run build failed (exit ${r.status ?? r.signal})`);
}

function newestMtime(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && /\.(ts|css|html)$/.test(entry.name)) {
      newest = Math.max(newest, fs.statSync(path.join(entry.parentPath, entry.name)).mtimeMs);
    }
  }
  return newest;
}

export interface Session {
  server: CodeServer;
  browser: Browser;
  wb: Workbench;
  /** Closes the browser and stops code-server and all it started; bounded, never throws. */
  close(): Promise<void>;
}

/** Opens `folder` in a real VS Code with Model Lens in development mode. */
export async function openSession(
  prefix: string,
  opts: Omit<CodeServerOptions, 'extensionDevelopmentPath'>,
): Promise<Session> {
  const server = await startCodeServer({ ...opts, extensionDevelopmentPath: EXTENSION_ROOT });
  let browser: Browser | undefined;
  const close = async (): Promise<void> => {
    if (browser)
      await withTimeout(browser.close(), TEARDOWN_TIMEOUT_MS, 'closing Chromium').catch(
        () => undefined,
      );
    await server.stop();
  };
  try {
    browser = await launchBrowser(server.runId);
    const wb = await Workbench.open(browser, server.url, prefix);
    return { server, browser, wb, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Text of the "Model Lens" output channel, from the log file VS Code keeps of it. */
export function outputChannelLog(userDataDir: string): string {
  const logs = path.join(userDataDir, 'logs');
  if (!fs.existsSync(logs)) return '';
  let text = '';
  for (const entry of fs.readdirSync(logs, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && /Model Lens\.log$/.test(entry.name)) {
      text += fs.readFileSync(path.join(entry.parentPath, entry.name), 'utf8');
    }
  }
  return text;
}
