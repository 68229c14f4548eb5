// The Python extension's interpreter choice, through its published API package
// (@vscode/python-extension) rather than a hand-typed copy of it.
import { PythonExtension } from '@vscode/python-extension';
import * as vscode from 'vscode';
import type { EngineManager } from './engineManager';

const PYTHON_EXTENSION_ID = 'ms-python.python';

/** The API, when the Python extension is installed; activating it is its own business. */
async function pythonApi(): Promise<PythonExtension | undefined> {
  if (!vscode.extensions.getExtension(PYTHON_EXTENSION_ID)) return undefined;
  try {
    return await PythonExtension.api();
  } catch {
    return undefined;
  }
}

/**
 * The interpreter the Python extension has selected for `resource`. Its absence or a failing
 * activation mean "no opinion": the engine then looks for python3 itself.
 */
export async function activePythonInterpreter(resource?: vscode.Uri): Promise<string | undefined> {
  const api = await pythonApi();
  const env = api?.environments.getActiveEnvironmentPath(resource);
  return env?.path || undefined;
}

/**
 * Calls `onChange` when the user picks another interpreter in the Python extension. Subscribes
 * when the first PyTorch engine starts (that start asked the API anyway), so Model Lens activating
 * never activates the Python extension.
 */
export function watchInterpreter(
  engines: EngineManager,
  onChange: (resource: vscode.Uri | undefined) => void,
): vscode.Disposable {
  let subscription: vscode.Disposable | undefined;
  let subscribing = false;
  const started = engines.onDidStart(({ kind }) => {
    if (kind !== 'pytorch' || subscription || subscribing) return;
    subscribing = true;
    void pythonApi().then((api) => {
      if (!api) return;
      subscription = api.environments.onDidChangeActiveEnvironmentPath((e) => {
        onChange(e.resource?.uri);
      });
    });
  });
  return { dispose: () => (started.dispose(), subscription?.dispose()) };
}
