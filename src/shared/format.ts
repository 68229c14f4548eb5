// Number and shape text shared by the CLI, the extension and the webviews: one spelling of
// "11,689,512", "[1, 3, 224, 224]" and "1.50 MiB" everywhere. No environment: no node, no DOM.

/** Thousands separators whatever the user's locale, as torchinfo prints them. */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function formatShape(shape: number[] | number[][] | null | undefined): string {
  if (!shape) return '--';
  if (shape.length > 0 && Array.isArray(shape[0]))
    return (shape as number[][]).map((s) => `[${s.join(', ')}]`).join(', ');
  return `[${(shape as number[]).join(', ')}]`;
}

/**
 * Binary units with three significant digits: `512 B`, `3.91 KiB`, `44.6 MiB`, `512 MiB`,
 * `7.50 GiB`; `?` when unknown. The one spelling of a byte count in the CLI, the extension, the
 * system report and the webviews.
 */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '?';
  if (Math.abs(bytes) < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes / 1024;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const digits = Math.abs(v) < 10 ? 2 : Math.abs(v) < 100 ? 1 : 0;
  return `${v.toFixed(digits)} ${units[i]}`;
}
