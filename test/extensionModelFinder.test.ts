// The CodeLens heuristic on the repository's real example and fixture files. Expected names and
// lines come from reading those files (`grep -n '^class \|^export '`), not from the finder.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { findJsModels, findModels, findPythonModels } from '../src/extension/modelFinder';

const ROOT = path.resolve(__dirname, '..');
const read = (rel: string) => fs.readFileSync(path.join(ROOT, rel), 'utf8');
/** 1-based lines as grep prints them, to 0-based as CodeLens ranges use. */
const at = (name: string | undefined, grepLine: number) => ({ name, line: grepLine - 1 });

describe('CodeLens model finder', () => {
  it('finds the nn.Module class of examples/iris_mlp.py', () => {
    assert.deepEqual(findModels('iris_mlp.py', read('examples/iris_mlp.py')), [at('IrisMLP', 19)]);
  });

  it('finds createModel but not train or inputShape in the TF.js examples', () => {
    assert.deepEqual(findModels('iris_mlp.ts', read('examples/iris_mlp.ts')), [
      at('createModel', 9),
    ]);
    assert.deepEqual(findModels('small_cnn.ts', read('examples/small_cnn.ts')), [
      at('createModel', 7),
    ]);
  });

  it('finds every module class of a file with several, and none in a file without', () => {
    assert.deepEqual(findModels('shared_model.py', read('test/fixtures/torch/shared_model.py')), [
      at('Block', 7),
      at('SharedNet', 17),
    ]);
    assert.deepEqual(findModels('two_models.py', read('test/fixtures/torch/two_models.py')), [
      at('Encoder', 5),
      at('Classifier', 14),
    ]);
    assert.deepEqual(findModels('no_module.py', read('test/fixtures/torch/no_module.py')), []);
  });

  it('accepts torch.nn.Module, bare Module and subclasses of local modules, across lines', () => {
    const src = [
      'from torch.nn import Module',
      'import torch',
      'class A(torch.nn.Module):',
      '    pass',
      'class B(Module):',
      '    pass',
      'class C(B):  # a module through B',
      '    pass',
      'class D(',
      '    A,',
      '    metaclass=Meta,',
      '):',
      '    pass',
      'class NotOne(dict):',
      '    pass',
      'class E(nn.Sequential):',
      '    pass',
      '    class Nested(nn.Module):',
      '        pass',
    ].join('\n');
    assert.deepEqual(findPythonModels(src), [
      at('A', 3),
      at('B', 5),
      at('C', 7),
      at('D', 9),
      at('E', 16),
    ]);
  });

  it('recognises JS models by what they build or by their export name', () => {
    const src = [
      "import * as tf from '@tensorflow/tfjs';",
      'export const model = build();',
      'export const lr = 0.01;',
      'export const net = () => tf.model({ inputs, outputs });',
      'export async function load() {',
      "  return tf.loadLayersModel('file://m/model.json');",
      '}',
      'export function helper() { return 1; }',
      'exports.createModel = function () { return make(); };',
    ].join('\n');
    assert.deepEqual(findJsModels(src), [
      at('model', 2),
      at('net', 4),
      at('load', 5),
      at('createModel', 9),
    ]);
  });

  it('puts one lens on a TF.js layers model.json and none on other JSON', () => {
    assert.deepEqual(
      findModels('web/model.json', '{"format": "layers-model", "modelTopology": {}}'),
      [at(undefined, 1)],
    );
    assert.deepEqual(findModels('package.json', '{"name": "x"}'), []);
  });
});
