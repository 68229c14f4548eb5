// A horizontal bar for table cells (share of the step, of self time). Plain DOM, no chart.
import { h } from './dom';

/** Width set through CSSOM, which the CSP allows (a style attribute would not be). */
export function bar(fraction: number, title?: string): HTMLElement {
  const fill = h('span', { class: 'bar-fill' });
  fill.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
  return h('span', { class: 'meter', title }, fill);
}
