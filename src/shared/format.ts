// Number and shape text shared by the CLI, the extension and the webviews: one spelling of
// "11,689,512", "[1, 3, 224, 224]" and "1.50 MiB" everywhere. No environment: no node, no DOM.

/** Thousands separators whatever the user's locale, as torchinfo prints them. */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function formatShape(shape: number[] | number[][] | null | undefined): string {
  if (!shape) return '--';
  if (shape.length > 0 && Array.isArray(shape[0])) return (shape as number[][]).map((s) => `[${s.join(', ')}]`).join(', ');
  return `[${(shape as number[]).join(', ')}]`;
}

/** Binary units: `512 B`, `3.91 KiB`, `44.6 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}
