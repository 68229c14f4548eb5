import * as vscode from 'vscode';
import { findModels } from './modelFinder';
import { trainingEntryLine } from './trainingModel';

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
    const trainLine = trainingEntryLine(document.fileName, document.getText());
    if (trainLine !== null) {
      lenses.push(
        new vscode.CodeLens(new vscode.Range(trainLine, 0, trainLine, 0), {
          title: 'Run Training',
          tooltip: 'Model Lens: run this training with live progress, loss curve and diagnosis',
          command: 'modelLens.runTraining',
          arguments: [document.uri],
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
