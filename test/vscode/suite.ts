// The editor scenarios of test/e2e, driven through the VS Code API instead of the screen:
// inspect, summary totals, hooks firing and stopping, CodeLens, re-inspect on save, diagnostics.
// Loaded by the extension host from runTests.ts; `run()` rejects on the first failure.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as vscode from 'vscode';

const ROOT = path.resolve(__dirname, '..', '..');
const EXAMPLES = path.join(ROOT, 'examples');
const POLL_MS = 100;
const EVENT_TIMEOUT_MS = 30_000;
const QUIET_WINDOW_MS = 2_000;

/** The part of the extension's activate() result this suite reads (see src/extension/extension.ts). */
interface ModelLensApi {
  modelName(): string | undefined;
  moduleCount(): number;
  module(path: string): { path: string; children: string[] } | undefined;
  totalParams(): number | undefined;
  hooks(): readonly { path: string; kind: string; events: number; attached: boolean }[];
  activateMs: number;
}

const COMMANDS = [
  'modelLens.inspectCurrentFile',
  'modelLens.profileCurrentFile',
  'modelLens.attachHook',
  'modelLens.attachForwardHook',
  'modelLens.attachBackwardHook',
  'modelLens.detachHooks',
  'modelLens.detachAllHooks',
  'modelLens.inspectOutput',
  'modelLens.goToDefinition',
  'modelLens.runForward',
  'modelLens.showSummary',
  'modelLens.exportTrace',
  'modelLens.restartEngine',
  'modelLens.showEngineLog',
];

/** The iris MLP in both frameworks: 4·10+10 = 50 and 10·3+3 = 33 parameters, 83 in all. */
const IRIS = [
  { file: 'iris_mlp.ts', name: 'createModel', hooked: 'hidden', modules: 3 },
  { file: 'iris_mlp.py', name: 'IrisMLP', hooked: 'fc1', modules: 4 },
];

async function until<T>(what: string, read: () => T, ok: (v: T) => boolean, timeoutMs = EVENT_TIMEOUT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last value ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

function torchAvailable(): boolean {
  return spawnSync('/usr/bin/python3', ['-c', 'import torch'], { timeout: 60_000 }).status === 0;
}

async function irisScenario(api: ModelLensApi, c: (typeof IRIS)[number]): Promise<void> {
  const doc = await vscode.workspace.openTextDocument(path.join(EXAMPLES, c.file));
  await vscode.window.showTextDocument(doc);
  await vscode.commands.executeCommand('modelLens.inspectCurrentFile');
  assert.equal(api.modelName(), c.name);
  assert.equal(api.moduleCount(), c.modules);
  assert.equal(api.totalParams(), 83);

  const node = api.module(c.hooked);
  assert.ok(node, `module ${c.hooked}`);
  await vscode.commands.executeCommand('modelLens.attachForwardHook', node);
  const hook = () => api.hooks().find((h) => h.path === c.hooked && h.attached);
  assert.ok(hook(), 'hook attached');
  await vscode.commands.executeCommand('modelLens.runForward');
  const fired = await until('hook events', () => hook()?.events ?? 0, (n) => n > 0);

  await vscode.commands.executeCommand('modelLens.detachHooks', node);
  assert.equal(hook(), undefined, 'no hook left on the module');
  const total = () => api.hooks().filter((h) => h.path === c.hooked).reduce((a, h) => a + h.events, 0);
  const before = total();
  assert.ok(before >= fired);
  await vscode.commands.executeCommand('modelLens.runForward');
  await new Promise((r) => setTimeout(r, QUIET_WINDOW_MS));
  assert.equal(total(), before, 'no events after detaching');
}

async function codeLensScenario(): Promise<void> {
  const uri = vscode.Uri.file(path.join(EXAMPLES, 'iris_mlp.py'));
  const lenses = await vscode.commands.executeCommand<vscode.CodeLens[]>('vscode.executeCodeLensProvider', uri);
  const ours = lenses.filter((l) => l.command?.command.startsWith('modelLens.'));
  assert.deepEqual(ours.map((l) => l.command?.title), ['Inspect', 'Profile']);
  assert.equal(ours[0].range.start.line, 18); // `class IrisMLP(nn.Module):` is line 19
  assert.deepEqual(ours[0].command?.arguments?.[0], { file: uri.fsPath, model: 'IrisMLP' });
}

/** Saving the model file re-inspects it; a broken save leaves a diagnostic on the right line. */
async function saveScenario(api: ModelLensApi): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'model-lens-vscode-'));
  fs.cpSync(EXAMPLES, dir, { recursive: true });
  const file = path.join(dir, 'iris_mlp.py');
  const doc = await vscode.workspace.openTextDocument(file);
  const editor = await vscode.window.showTextDocument(doc);
  await vscode.commands.executeCommand('modelLens.inspectCurrentFile');
  assert.equal(api.moduleCount(), 4);

  const fc2 = doc.getText().split('\n').findIndex((l) => l.includes('self.fc2 = nn.Linear'));
  await editor.edit((e) => e.insert(new vscode.Position(fc2 + 1, 0), '        self.extra = nn.Identity()\n'));
  await doc.save();
  await until('the re-inspect after save', () => api.module('extra'), (m) => m !== undefined);

  await editor.edit((e) => e.insert(new vscode.Position(fc2 + 2, 0), '        def broken(:\n'));
  await doc.save();
  const diags = await until('a diagnostic', () => vscode.languages.getDiagnostics(doc.uri), (d) => d.length > 0);
  assert.equal(diags[0].severity, vscode.DiagnosticSeverity.Error);
  assert.equal(diags[0].range.start.line, fc2 + 2, 'diagnostic on the broken line');
  assert.ok(api.module('extra'), 'the last good tree stays');
  fs.rmSync(dir, { recursive: true, force: true });
}

export async function run(): Promise<void> {
  const ext = vscode.extensions.all.find((e) => e.packageJSON.name === 'model-lens');
  assert.ok(ext, 'Model Lens is installed');
  const api = (await ext.activate()) as ModelLensApi;
  console.log(`activate() took ${api.activateMs.toFixed(1)} ms`);
  const registered = new Set(await vscode.commands.getCommands(true));
  for (const id of COMMANDS) assert.ok(registered.has(id), `command ${id}`);

  await codeLensScenario();
  await irisScenario(api, IRIS[0]);
  if (torchAvailable()) {
    await irisScenario(api, IRIS[1]);
    await saveScenario(api);
  } else {
    console.log('skipped the PyTorch scenarios: /usr/bin/python3 cannot import torch');
  }
}
