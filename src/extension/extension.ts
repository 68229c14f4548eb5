// Entry point. activate() only registers views, commands and listeners: no engine starts and
// nothing heavy loads until the user asks for a model (see lazyModules.ts).
import * as vscode from 'vscode';
import type { HookKind, ModuleNode } from '../protocol/types';
import { CODELENS_SELECTOR, ModelCodeLensProvider, type ModelTarget } from './codeLens';
import { EngineManager } from './engineManager';
import { GpuStatusBar } from './gpuStatusBar';
import { ModelSession } from './modelSession';
import { ModulesProvider, TensorsProvider, type TensorElement } from './moduleTree';
import { PanelHost } from './panels';
import { watchInterpreter } from './pythonEnv';
import { TrainingController } from './training';
import { SystemPanel } from './systemPanel';
import { GpuHistory } from './systemModel';
import { GpuSampler } from '../system/gpuSampler';

let activeEngines: EngineManager | undefined;
let activeSampler: GpuSampler | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const started = performance.now();
  const output = vscode.window.createOutputChannel('Model Lens');
  const engines = new EngineManager(output, String(context.extension.packageJSON.version ?? '0'));
  const diagnostics = vscode.languages.createDiagnosticCollection('modelLens');
  const status = vscode.window.createStatusBarItem(
    'modelLens.status',
    vscode.StatusBarAlignment.Left,
    10,
  );
  status.name = 'Model Lens';
  status.command = 'modelLens.showSummary';
  const panels = new PanelHost(context.extensionUri, output);
  const s = new ModelSession(engines, panels, output, diagnostics, status);
  activeEngines = engines;
  // Constructing the sampler spawns nothing; GpuStatusBar starts it after a delay.
  const sampler = new GpuSampler({ log: (line) => output.appendLine(`[gpu] ${line}`) });
  activeSampler = sampler;
  const gpuHistory = new GpuHistory(sampler);
  const systemPanel = new SystemPanel(panels, gpuHistory, engines, output);

  const training = new TrainingController(engines, s, output, panels);

  const modules = new ModulesProvider(s);
  const tensors = new TensorsProvider(s);
  const modulesView = vscode.window.createTreeView('modelLens.modules', {
    treeDataProvider: modules,
    showCollapseAll: true,
  });
  const tensorsView = vscode.window.createTreeView<TensorElement>('modelLens.parameters', {
    treeDataProvider: tensors,
    showCollapseAll: true,
  });
  s.attachViews({
    modules,
    tensors,
    modulesView,
    tensorsView: tensorsView as vscode.TreeView<unknown>,
  });
  // In an untrusted workspace the empty views show package.json's viewsWelcome (the reason and
  // a "Manage Workspace Trust" link); a TreeView.message would hide it.

  const command = (id: string, fn: (...args: never[]) => unknown) =>
    vscode.commands.registerCommand(id, fn as (...args: unknown[]) => unknown);
  const targetOf = (arg: unknown): ModelTarget | undefined =>
    arg instanceof vscode.Uri ? { file: arg.fsPath } : isTarget(arg) ? arg : s.activeTarget();
  const nodeOrPick = async (arg: unknown): Promise<ModuleNode | undefined> =>
    isModuleNode(arg) ? arg : pickModule(s);

  context.subscriptions.push(
    output,
    engines,
    diagnostics,
    status,
    panels,
    s,
    modulesView,
    tensorsView,
    new GpuStatusBar(gpuHistory, engines, (line) => output.appendLine(`[gpu] ${line}`)),
    systemPanel,
    { dispose: () => void sampler.dispose() },
    vscode.languages.registerCodeLensProvider(CODELENS_SELECTOR, new ModelCodeLensProvider()),
    vscode.workspace.onDidSaveTextDocument((doc) => s.onDidSave(doc)),
    vscode.window.onDidChangeActiveTextEditor(() => s.describeViews()),
    vscode.workspace.onDidGrantWorkspaceTrust(() => s.setMessage(undefined)),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('modelLens.pythonPath')) void engines.restart('pytorch');
      if (e.affectsConfiguration('modelLens.tfjsBackend')) void engines.restart('tfjs');
    }),
    // The Python extension's interpreter, when modelLens.pythonPath does not override it: a new
    // choice restarts the PyTorch engine, as a new pythonPath does. Subscribed on the first
    // PyTorch engine start, so activating Model Lens never activates the Python extension.
    watchInterpreter(engines, (uri) => {
      if (vscode.workspace.getConfiguration('modelLens', uri).get<string>('pythonPath')) return;
      if (!engines.running('pytorch')) return;
      output.appendLine(
        '[pytorch] the Python extension switched interpreter; restarting the engine',
      );
      void engines
        .restart('pytorch')
        .then(() => (s.model?.kind === 'pytorch' ? s.reload() : undefined));
    }),

    command('modelLens.inspectCurrentFile', async (arg?: unknown) => {
      const target = targetOf(arg);
      if (!target)
        return void vscode.window.showInformationMessage(
          'Model Lens: open a model file (.py, .js, .ts or model.json) first.',
        );
      await s.inspect(target);
    }),
    command('modelLens.profileCurrentFile', async (arg?: unknown) => {
      await s.profile(targetOf(arg));
    }),
    command('modelLens.attachHook', async (arg?: unknown) => {
      const node = await nodeOrPick(arg);
      const kind = node && (await pickHookKind());
      if (node && kind) await s.attachHook(node.path, kind);
    }),
    command('modelLens.attachForwardHook', async (arg?: unknown) => {
      const node = await nodeOrPick(arg);
      if (node) await s.attachHook(node.path, 'forward');
    }),
    command('modelLens.attachBackwardHook', async (arg?: unknown) => {
      const node = await nodeOrPick(arg);
      if (node) await s.attachHook(node.path, 'backward');
    }),
    command('modelLens.detachHooks', async (arg?: unknown) => {
      const node = await nodeOrPick(arg);
      if (node) await s.detachHooks(node.path);
    }),
    command('modelLens.detachAllHooks', () => s.detachHooks()),
    command('modelLens.inspectOutput', async (arg?: unknown) => {
      const node = await nodeOrPick(arg);
      if (node) await s.inspectTensor({ kind: 'output', path: node.path });
    }),
    command('modelLens.inspectTensor', async (arg?: unknown) => {
      if (isTensorRef(arg)) await s.inspectTensor({ kind: arg.kind, name: arg.name });
    }),
    command('modelLens.goToDefinition', async (arg?: unknown) =>
      s.goToDefinition(await nodeOrPick(arg)),
    ),
    command('modelLens.runForward', () => s.runForward()),
    command('modelLens.showSummary', () => s.showSummary()),
    command('modelLens.showHooks', () => s.showHooks()),
    command('modelLens.exportTrace', () => s.exportTrace()),
    command('modelLens.restartEngine', async () => {
      await engines.restart();
      output.appendLine(
        '[extension] engines stopped by Restart Engine; they start again on the next request',
      );
      await s.reload();
    }),
    command('modelLens.showEngineLog', () => output.show(true)),
    command('modelLens.showSystem', () => systemPanel.show()),
    training,
    command('modelLens.runTraining', (arg?: unknown) =>
      training.start(
        arg instanceof vscode.Uri ? arg.fsPath : isTarget(arg) ? arg.file : s.activeTarget()?.file,
      ),
    ),
    command('modelLens.runTrainingDistributed', async (arg?: unknown) => {
      const file =
        arg instanceof vscode.Uri ? arg.fsPath : isTarget(arg) ? arg.file : s.activeTarget()?.file;
      if (!file?.endsWith('.py')) {
        void vscode.window.showInformationMessage(
          'Model Lens: Run Training (N processes) runs a PyTorch script through torch.distributed.run; open a .py training script first.',
        );
        return;
      }
      const n = await processCount(context, file);
      if (n !== undefined) await training.start(file, n);
    }),
    command('modelLens.stopTraining', () => training.stop()),
    command('modelLens.showTraining', () => training.showPanel()),
  );

  const activateMs = performance.now() - started;
  output.appendLine(`[extension] activated in ${activateMs.toFixed(1)} ms`);
}

/** The most ranks the editor starts on one machine (torch.distributed.run's --nproc-per-node). */
const MAX_PROCESSES_PER_NODE = 64;

/** N for "Run Training (N processes)": asked the first time for a file, then remembered. */
async function processCount(
  context: vscode.ExtensionContext,
  file: string,
): Promise<number | undefined> {
  const key = `modelLens.nprocPerNode:${file}`;
  const remembered = context.workspaceState.get<number>(key);
  if (remembered) return remembered;
  const answer = await vscode.window.showInputBox({
    title: 'Model Lens: Run Training (N processes)',
    prompt: `Processes (ranks) for ${file.split(/[\\/]/).pop()}, launched with torch.distributed.run; remembered for this file`,
    value: '2',
    validateInput: (v) => {
      const n = Number(v);
      return Number.isInteger(n) && n >= 1 && n <= MAX_PROCESSES_PER_NODE
        ? undefined
        : `A whole number from 1 to ${MAX_PROCESSES_PER_NODE}`;
    },
  });
  if (answer === undefined) return undefined;
  const n = Number(answer);
  await context.workspaceState.update(key, n);
  return n;
}

/** Engines are stopped (with their process groups) before the extension host goes away. */
export async function deactivate(): Promise<void> {
  await Promise.all([activeEngines?.restart(), activeSampler?.dispose()]);
  activeEngines = undefined;
  activeSampler = undefined;
}

async function pickModule(s: ModelSession): Promise<ModuleNode | undefined> {
  const model = await s.ensureModel(s.model ? undefined : s.activeTarget());
  if (!model) return undefined;
  const items = [...model.modules.values()].map((node) => ({
    label: node.path || '(root)',
    description: node.type,
    node,
  }));
  const pick = await vscode.window.showQuickPick(items, {
    title: `Modules of ${model.load.name}`,
    placeHolder: 'Module path',
    matchOnDescription: true,
  });
  return pick?.node;
}

async function pickHookKind(): Promise<HookKind | undefined> {
  const kinds: (vscode.QuickPickItem & { hook: HookKind })[] = [
    { label: 'Forward', description: "statistics of the module's output", hook: 'forward' },
    { label: 'Forward pre', description: "statistics of the module's input", hook: 'forwardPre' },
    {
      label: 'Backward',
      description: 'statistics of the gradient of the output',
      hook: 'backward',
    },
  ];
  return (await vscode.window.showQuickPick(kinds, { title: 'Hook kind' }))?.hook;
}

function isTarget(arg: unknown): arg is ModelTarget {
  return typeof arg === 'object' && arg !== null && typeof (arg as ModelTarget).file === 'string';
}

function isModuleNode(arg: unknown): arg is ModuleNode {
  return (
    typeof arg === 'object' &&
    arg !== null &&
    typeof (arg as ModuleNode).path === 'string' &&
    Array.isArray((arg as ModuleNode).children)
  );
}

function isTensorRef(arg: unknown): arg is { kind: 'parameter' | 'buffer'; name: string } {
  const a = arg as { kind?: unknown; name?: unknown } | null;
  return (
    typeof a === 'object' &&
    a !== null &&
    (a.kind === 'parameter' || a.kind === 'buffer') &&
    typeof a.name === 'string'
  );
}
