import * as vscode from 'vscode';

/** The part of the ms-python.python API used here; everything is optional because versions differ. */
interface PythonExtensionApi {
  environments?: {
    getActiveEnvironmentPath?(resource?: vscode.Uri): { path?: string } | undefined;
  };
}

/**
 * The interpreter the Python extension has selected for `resource`, when that extension is
 * installed. Its absence, an old API or a failing activation all mean "no opinion".
 */
export async function activePythonInterpreter(resource?: vscode.Uri): Promise<string | undefined> {
  try {
    const ext = vscode.extensions.getExtension<PythonExtensionApi>('ms-python.python');
    if (!ext) return undefined;
    const api = ext.isActive ? ext.exports : await ext.activate();
    const env = api?.environments?.getActiveEnvironmentPath?.(resource);
    return typeof env?.path === 'string' && env.path ? env.path : undefined;
  } catch {
    return undefined;
  }
}
