// Where each element of a strided tensor lives in its storage, for the Tensor panel's picture of
// logical order against memory order. Pure: no DOM, so it can be checked by hand-computed cases.

/** Beyond this the picture stops being readable; the panel shows numbers only. */
export const MAX_LAYOUT_ELEMENTS = 64;

export interface TensorLayout {
  /** Storage index (in elements) of each element, in logical row-major order. */
  storageIndex: number[];
  /** Grid the logical picture is drawn in: leading dims flattened into rows, the last dim as columns. */
  rows: number;
  cols: number;
  /** Storage slots from the lowest to the highest index the tensor touches, with the logical elements in each (none: a gap; several: stride 0 or overlap). */
  slots: { index: number; logical: number[] }[];
}

export function tensorLayout(
  shape: number[],
  stride: number[],
  storageOffset: number,
  maxElements = MAX_LAYOUT_ELEMENTS,
): TensorLayout | undefined {
  if (shape.length !== stride.length) return undefined;
  const numel = shape.reduce((a, b) => a * b, 1);
  if (numel === 0 || numel > maxElements) return undefined;
  const storageIndex: number[] = [];
  const idx = new Array<number>(shape.length).fill(0);
  for (let n = 0; n < numel; n++) {
    let at = storageOffset;
    for (let d = 0; d < shape.length; d++) at += idx[d] * stride[d];
    storageIndex.push(at);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  const lo = Math.min(...storageIndex);
  const hi = Math.max(...storageIndex);
  // Sparse views (a large stride) would draw long runs of gaps; cap the memory row.
  if (hi - lo + 1 > maxElements * 4)
    return { storageIndex, ...grid(shape), slots: compactSlots(storageIndex) };
  const slots = Array.from({ length: hi - lo + 1 }, (_, i) => ({
    index: lo + i,
    logical: [] as number[],
  }));
  storageIndex.forEach((s, logical) => slots[s - lo].logical.push(logical));
  return { storageIndex, ...grid(shape), slots };
}

function grid(shape: number[]): { rows: number; cols: number } {
  const cols = shape.length ? shape[shape.length - 1] : 1;
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  return { rows, cols };
}

function compactSlots(storageIndex: number[]): { index: number; logical: number[] }[] {
  const by = new Map<number, number[]>();
  storageIndex.forEach((s, logical) => by.set(s, [...(by.get(s) ?? []), logical]));
  return [...by.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([index, logical]) => ({ index, logical }));
}
