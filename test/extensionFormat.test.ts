// Text the views and "Copy as text" show, checked against hand-computed figures.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ModelTreeResult, SummaryResult } from '../src/protocol/messages';
import type { ModuleNode } from '../src/protocol/types';
import { formatSummary } from '../src/client/textFormat';
import { formatCount } from '../src/shared/format';
import {
  aliasesUnder,
  moduleDescription,
  moduleNotes,
  parseInputShapes,
} from '../src/extension/format';

/** The iris MLP: fc1 4·10+10 = 50, fc2 10·3+3 = 33, total 83 params = 332 bytes of float32. */
const IRIS: SummaryResult = {
  rows: [
    {
      path: '',
      type: 'IrisMLP',
      depth: 0,
      isLeaf: false,
      outputShape: [8, 3],
      params: 83,
      trainableParams: 83,
      macs: 640,
      paramBytes: 332,
      aliases: [],
      ran: true,
    },
    {
      path: 'fc1',
      type: 'Linear',
      depth: 1,
      isLeaf: true,
      outputShape: [8, 10],
      params: 50,
      trainableParams: 50,
      macs: 320,
      paramBytes: 200,
      aliases: [],
      ran: true,
    },
    {
      path: 'act',
      type: 'ReLU',
      depth: 1,
      isLeaf: true,
      outputShape: [8, 10],
      params: 0,
      trainableParams: 0,
      macs: 0,
      paramBytes: 0,
      aliases: [],
      ran: true,
    },
    {
      path: 'fc2',
      type: 'Linear',
      depth: 1,
      isLeaf: true,
      outputShape: [8, 3],
      params: 33,
      trainableParams: 33,
      macs: 240,
      paramBytes: 132,
      aliases: [],
      ran: true,
    },
  ],
  totals: {
    params: 83,
    trainableParams: 83,
    nonTrainableParams: 0,
    macs: 560,
    paramBytes: 332,
    bufferBytes: 0,
    inputBytes: 128,
    forwardBackwardBytes: 672,
    totalBytes: 1132,
  },
  inputs: [{ shape: [8, 4], dtype: 'float32', source: 'example' }],
  warnings: [],
};

function node(path: string, type: string, params: number, children: string[] = []): ModuleNode {
  return {
    path,
    name: path,
    type,
    depth: path === '' ? 0 : 1,
    parent: path === '' ? null : '',
    children,
    aliases: [],
    training: true,
    ownParams: path === '' ? 0 : params,
    totalParams: params,
    trainableParams: params,
    frozen: false,
    isLeaf: children.length === 0,
  };
}

const IRIS_TREE: ModelTreeResult = {
  modules: [
    node('', 'IrisMLP', 83, ['fc1', 'act', 'fc2']),
    node('fc1', 'Linear', 50),
    node('act', 'ReLU', 0),
    node('fc2', 'Linear', 33),
  ],
  parameters: [],
  buffers: [],
};

describe('format', () => {
  it('writes counts with thousands separators whatever the locale', () => {
    assert.equal(formatCount(11_689_512), '11,689,512'); // torchvision resnet18
    assert.equal(formatCount(83), '83');
  });

  it('describes a module as output shape · params · type; aliases, frozen and eval go to the tooltip', () => {
    const node: ModuleNode = {
      path: 'blocks.1',
      name: '1',
      type: 'Linear',
      depth: 2,
      parent: 'blocks',
      children: [],
      aliases: ['shared'],
      training: false,
      ownParams: 72,
      totalParams: 72,
      trainableParams: 0,
      frozen: true,
      isLeaf: true,
    };
    const row = { ...IRIS.rows[1], path: 'blocks.1', outputShape: [1, 8] };
    // Shape and parameters first (a narrow side bar cuts the end), the rest in the tooltip.
    assert.equal(moduleDescription(node, row), '[1, 8] · 72 params · Linear');
    assert.deepEqual(moduleNotes(node, row), ['also at shared', 'frozen', 'eval']);
    assert.equal(
      moduleDescription({ ...node, aliases: [], training: true, frozen: false }, undefined),
      '72 params · Linear',
    );
    assert.equal(
      moduleDescription({ ...node, path: '' }, { ...row, ran: false, outputShape: null }),
      'not run · 72 params',
    );
  });

  it('finds the aliases registered directly under a parent (a ModuleList holding one block twice)', () => {
    const block: ModuleNode = {
      ...node('layers.0', 'Block', 72),
      aliases: ['layers.2', 'other.lin'],
    };
    const lin: ModuleNode = { ...node('layers.0.lin', 'Linear', 72), aliases: ['layers.2.lin'] };
    const found = aliasesUnder('layers', [block, lin]);
    assert.deepEqual(
      found.map((f) => [f.alias, f.target.path]),
      [['layers.2', 'layers.0']],
    );
    assert.deepEqual(
      aliasesUnder('layers.2', [block, lin]).map((f) => f.alias),
      ['layers.2.lin'],
    );
  });

  it('parses defaultInputShape for one or several inputs and rejects nonsense', () => {
    assert.equal(parseInputShapes(''), undefined);
    assert.deepEqual(parseInputShapes('1,3,224,224'), [[1, 3, 224, 224]]);
    assert.deepEqual(parseInputShapes(' [1, 3, 32, 32] ; 1x10 '), [
      [1, 3, 32, 32],
      [1, 10],
    ]);
    assert.throws(() => parseInputShapes('1,a,3'), /"1,a,3" is not a shape/);
    assert.throws(() => parseInputShapes('1,0'), /not a shape/);
  });

  it('writes a torchinfo-style summary', () => {
    const text = formatSummary('IrisMLP', IRIS_TREE, IRIS);
    const lines = text.split('\n');
    assert.ok(lines.includes('Total params: 83'));
    assert.ok(lines.includes('Trainable params: 83'));
    assert.ok(lines.includes('Non-trainable params: 0'));
    assert.ok(lines.includes('Total mult-adds (M): 0.00'));
    assert.ok(lines.includes('Params size (MB): 0.00')); // 332 B
    assert.ok(lines.includes('Estimated Total Size (MB): 0.00'));
    const fc1 = lines.find((l) => l.includes('(fc1)'));
    assert.match(fc1 ?? '', /^├─Linear \(fc1\): 1-1\s+\[8, 10\]\s+50$/);
    assert.match(lines.find((l) => l.includes('(act)')) ?? '', /\[8, 10\]\s+--$/);
    assert.match(lines.find((l) => l.startsWith('IrisMLP')) ?? '', /\[8, 3\]\s+--$/);
  });

  it('switches mult-adds to G past a billion', () => {
    const big = { ...IRIS, totals: { ...IRIS.totals, macs: 1_814_083_944 } }; // resnet18 at 224×224, as torchinfo reports it
    assert.ok(formatSummary('resnet18', IRIS_TREE, big).includes('Total mult-adds (G): 1.81'));
  });
});
