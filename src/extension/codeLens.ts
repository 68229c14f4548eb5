import * as vscode from 'vscode';
import { findModels } from './modelFinder';

/** What CodeLens and tree commands pass to inspect/profile: the file and the model in it. */
export interface ModelTarget {
  file: string;
  /** Class or export name (`--model NAME`); omitted when the file holds one model. */
  model?: string;
}

/** "Inspect · Profile" above every model a file defines, found by a text heuristic. */
export class ModelCodeLensProvider implements vscode.CodeLensProvider {
  provideCodeLenses(document: vscode.TextDocument): vscode.CodeLens[] {
    if (document.uri.scheme !== 'file') return [];
    const lenses: vscode.CodeLens[] = [];
    for (const found of findModels(document.fileName, document.getText())) {
      const range = new vscode.Range(found.line, 0, found.line, 0);
      const target: ModelTarget = { file: document.uri.fsPath, model: found.name };
      const what = found.name ?? 'this model';
      lenses.push(
        new vscode.CodeLens(range, {
          title: 'Inspect',
          tooltip: `Model Lens: load ${what} and show its modules and summary`,
          command: 'modelLens.inspectCurrentFile',
          arguments: [target],
        }),
        new vscode.CodeLens(range, {
          title: 'Profile',
          tooltip: `Model Lens: time the ops of ${what}`,
          command: 'modelLens.profileCurrentFile',
          arguments: [target],
        }),
      );
    }
    return lenses;
  }
}

export const CODELENS_SELECTOR: vscode.DocumentSelector = [
  { scheme: 'file', language: 'python' },
  { scheme: 'file', language: 'javascript' },
  { scheme: 'file', language: 'typescript' },
  { scheme: 'file', language: 'javascriptreact' },
  { scheme: 'file', language: 'typescriptreact' },
  { scheme: 'file', pattern: '**/*model.json' },
];
