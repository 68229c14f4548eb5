// Logical vs memory order of strided tensors, against layouts worked out by hand from
// index = offset + Σ i_d · stride_d.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tensorLayout } from '../webview/memoryLayout';

describe('tensor memory layout', () => {
  it('a contiguous 2×3 tensor is stored in logical order', () => {
    const l = tensorLayout([2, 3], [3, 1], 0);
    assert.deepEqual(l?.storageIndex, [0, 1, 2, 3, 4, 5]);
    assert.deepEqual([l?.rows, l?.cols], [2, 3]);
    assert.deepEqual(
      l?.slots.map((s) => s.logical),
      [[0], [1], [2], [3], [4], [5]],
    );
  });

  it('its transpose (3×2, stride [1, 3]) reads storage out of order', () => {
    const l = tensorLayout([3, 2], [1, 3], 0);
    // (0,0)→0 (0,1)→3 (1,0)→1 (1,1)→4 (2,0)→2 (2,1)→5
    assert.deepEqual(l?.storageIndex, [0, 3, 1, 4, 2, 5]);
    assert.deepEqual(
      l?.slots.map((s) => s.logical),
      [[0], [2], [4], [1], [3], [5]],
    );
  });

  it('an expanded tensor (stride 0) puts several elements in one slot', () => {
    const l = tensorLayout([2, 3], [0, 1], 0);
    assert.deepEqual(l?.storageIndex, [0, 1, 2, 0, 1, 2]);
    assert.deepEqual(
      l?.slots.map((s) => s.logical),
      [
        [0, 3],
        [1, 4],
        [2, 5],
      ],
    );
  });

  it('a slice x[:, 1:] of a 2×3 tensor starts at offset 1 and skips slot 3', () => {
    const l = tensorLayout([2, 2], [3, 1], 1);
    assert.deepEqual(l?.storageIndex, [1, 2, 4, 5]);
    assert.deepEqual(l?.slots, [
      { index: 1, logical: [0] },
      { index: 2, logical: [1] },
      { index: 3, logical: [] },
      { index: 4, logical: [2] },
      { index: 5, logical: [3] },
    ]);
  });

  it('a 0-d tensor is one element at its offset; large or empty tensors are not drawn', () => {
    assert.deepEqual(tensorLayout([], [], 4)?.storageIndex, [4]);
    assert.equal(tensorLayout([8, 10], [10, 1], 0), undefined);
    assert.equal(tensorLayout([0, 3], [3, 1], 0), undefined);
    assert.equal(tensorLayout([2, 3], [1], 0), undefined);
  });
});
