// Model Lens: System — CPU, GPUs, a live chart of GPU memory and utilization, and the PyTorch
// memory breakdown. The extension sends one full state, then patches that append samples.
import { formatBytes } from '../src/shared/format';
import { h, svg } from './dom';
import { app, startPanel } from './host';
import type { CpuInfo, GpuInfo } from '../src/protocol/types';
import type { GpuRow, GpuSample, SystemPanelPatch, SystemPanelState, SystemSample } from '../src/protocol/webviewMessages';

type SystemState = SystemPanelState;
type SystemPatch = SystemPanelPatch;

const CHART_W = 600;
const CHART_H = 140;
const MIB_PER_GIB = 1024;
/** The sampler's tick (GPU_SAMPLE_INTERVAL_MS), for the time axis. */
const SAMPLE_INTERVAL_S = 1;

let state: SystemState | null = null;
const sections = {
  cpu: h('section', { id: 'cpu' }),
  gpus: h('section', { id: 'gpus' }),
  chart: h('section', { id: 'chart' }),
  memory: h('section', { id: 'memory' }),
};

function dash(v: number | string | null | undefined, unit = ''): string {
  return v === null || v === undefined || v === '' ? '—' : `${v}${unit}`;
}

function gib(mib: number | null | undefined): string {
  return mib === null || mib === undefined ? '—' : `${(mib / MIB_PER_GIB).toFixed(1)} GiB`;
}

function facts(rows: Array<[string, string]>, id: string): HTMLTableElement {
  return h('table', { class: 'grid facts', id }, h('tbody', null, ...rows.map(([k, v]) => h('tr', null, h('th', { scope: 'row' }, k), h('td', null, v)))));
}

function renderCpu(s: SystemState): void {
  const c = s.cpu;
  const body = c
    ? facts(
        [
          ['Model', c.model],
          ['Architecture', c.arch],
          ['Physical cores', String(c.physicalCores)],
          ['Logical threads', String(c.logicalCores)],
          ['Base clock', dash(c.speedMHz, ' MHz')],
          ['Max clock', dash(c.speedMaxMHz, ' MHz')],
          ['Load', dash(c.loadPct, ' %')],
        ],
        'cpu-facts',
      )
    : h('p', { class: s.cpuError ? 'error' : 'muted' }, s.cpuError ? `CPU facts unavailable: ${s.cpuError}` : 'Reading CPU facts…');
  sections.cpu.replaceChildren(h('h2', null, 'CPU'), body);
}

function gpuStatusText(s: SystemState): string {
  if (s.gpuStatus.state === 'unavailable') return `No NVIDIA GPU data: ${s.gpuStatus.reason ?? 'nvidia-smi is not answering'}.`;
  if (s.gpuStatus.state === 'starting' || s.gpuStatus.state === 'idle') return 'Waiting for nvidia-smi…';
  return 'nvidia-smi reported no GPU.';
}

function renderGpus(s: SystemState): void {
  if (s.gpus.length === 0) {
    sections.gpus.replaceChildren(h('h2', null, 'GPUs'), h('p', { class: 'muted', id: 'gpu-none' }, gpuStatusText(s)));
    return;
  }
  const stale = s.gpuStatus.state === 'unavailable' ? h('p', { class: 'warning' }, `GPU data unavailable (${s.gpuStatus.reason ?? 'nvidia-smi stopped answering'}); showing the last figures.`) : null;
  const rows = s.gpus.map((g) =>
    h(
      'tr',
      { 'data-gpu': g.index },
      h('td', { class: 'num' }, g.index),
      h('td', { class: 'gpu-name' }, g.name),
      h('td', null, g.computeCapability ? `${g.computeCapability}${g.architecture ? ` (${g.architecture})` : ''}` : '—'),
      h('td', { class: 'num' }, gib(g.memoryTotalMiB)),
      h('td', { class: 'num' }, `${gib(g.memoryUsedMiB)}`),
      h('td', { class: 'num' }, g.utilizationPct === null ? (g.mig ? 'MIG' : '—') : `${Math.round(g.utilizationPct)} %`),
      h('td', { class: 'num' }, dash(g.temperatureC, ' °C')),
      h('td', null, dash(g.driverVersion)),
      h('td', null, dash(g.cudaVersion)),
    ),
  );
  sections.gpus.replaceChildren(
    h('h2', null, 'GPUs'),
    stale ?? '',
    h(
      'table',
      { class: 'grid', id: 'gpu-table' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          ...['#', 'Name', 'Compute capability', 'VRAM', 'Used', 'Util', 'Temp', 'Driver', 'CUDA'].map((t, i) => h('th', { class: i === 0 || (i >= 3 && i <= 6) ? 'num' : undefined }, t)),
        ),
      ),
      h('tbody', null, ...rows),
    ),
  );
}

/** One chart per GPU: memory used (% of total) and utilization (%), oldest sample on the left. */
function gpuChart(s: SystemState, index: number): HTMLElement {
  const points = s.samples.map((p) => ({ time: p.time, g: p.gpus.find((x) => x.index === index) }));
  const n = s.historyCapacity;
  const x = (i: number) => (((n - points.length + i) / Math.max(n - 1, 1)) * CHART_W).toFixed(1);
  const y = (pct: number) => (CHART_H - (Math.max(0, Math.min(100, pct)) / 100) * CHART_H).toFixed(1);
  const mem: string[] = [];
  const util: string[] = [];
  points.forEach((p, i) => {
    if (p.g?.memoryUsedMiB != null && p.g.memoryTotalMiB) mem.push(`${x(i)},${y((p.g.memoryUsedMiB / p.g.memoryTotalMiB) * 100)}`);
    if (p.g?.utilizationPct != null) util.push(`${x(i)},${y(p.g.utilizationPct)}`);
  });
  const last = points[points.length - 1]?.g;
  const label = `GPU ${index}: memory used and utilization, % of the maximum, over the last ${Math.round((n * SAMPLE_INTERVAL_S) / 60)} minutes`;
  const chart = svg(
    'svg',
    { viewBox: `0 0 ${CHART_W} ${CHART_H}`, class: 'system-chart', role: 'img', 'aria-label': label, preserveAspectRatio: 'none' },
    ...[25, 50, 75].map((p) => svg('line', { class: 'gridline', x1: 0, x2: CHART_W, y1: y(p), y2: y(p) })),
    svg('polyline', { class: 'mem', points: mem.join(' ') }),
    svg('polyline', { class: 'util', points: util.join(' ') }),
    svg('title', null, label),
  );
  const memNow = last?.memoryUsedMiB != null ? `${gib(last.memoryUsedMiB)} / ${gib(last.memoryTotalMiB)}` : '—';
  const utilNow = last?.utilizationPct != null ? `${Math.round(last.utilizationPct)} %` : '—';
  const minutes = Math.round((n * SAMPLE_INTERVAL_S) / 60);
  return h(
    'figure',
    { class: 'system-figure', 'data-gpu': index },
    h('div', { class: 'axis' }, h('span', null, '100 %'), h('span', null, '0 %')),
    chart,
    h('div', { class: 'axis-x muted' }, h('span', null, `${minutes} min ago`), h('span', null, 'now')),
    h(
      'figcaption',
      null,
      h('span', null, `GPU ${index}`),
      h('span', { class: 'legend-mem' }, `■ memory ${memNow}`),
      h('span', { class: 'legend-util' }, `■ utilization ${utilNow}`),
      h('span', null, `${points.length} samples`),
    ),
  );
}

function renderChart(s: SystemState): void {
  const indices = [...new Set(s.samples.flatMap((p) => p.gpus.map((g) => g.index)))].sort((a, b) => a - b);
  if (indices.length === 0) {
    sections.chart.replaceChildren();
    return;
  }
  sections.chart.replaceChildren(h('h2', null, 'GPU memory and utilization'), h('div', { class: 'charts' }, ...indices.map((i) => gpuChart(s, i))));
}

function renderMemory(s: SystemState): void {
  const m = s.memory;
  const title = h('h2', null, 'GPU memory, three ways');
  if (!m.figures) {
    sections.memory.replaceChildren(title, h('p', { class: 'muted', id: 'memory-message' }, m.message ?? ''));
    return;
  }
  const rows = m.figures.map((f) => h('tr', { 'data-figure': f.key }, h('th', { scope: 'row' }, f.label), h('td', { class: 'num' }, f.bytes === null ? '—' : formatBytes(f.bytes)), h('td', { class: 'note' }, f.explanation)));
  if (m.processBytes !== undefined) {
    rows.splice(
      2,
      0,
      h(
        'tr',
        { 'data-figure': 'process' },
        h('th', { scope: 'row' }, 'This process'),
        h('td', { class: 'num' }, m.processBytes === null ? '—' : formatBytes(m.processBytes)),
        h('td', { class: 'note' }, m.processBytes === null ? 'nvidia-smi did not attribute memory to the engine process (MIG or WDDM, or not yet sampled).' : `What nvidia-smi counts for the engine process (pid ${m.engine?.pid ?? '?'}) alone: PyTorch's pool plus the CUDA context.`),
      ),
    );
  }
  const where = m.engine ? `${m.engine.kind} engine, pid ${m.engine.pid}${m.gpuIndex !== undefined ? `, GPU ${m.gpuIndex}` : ''}` : '';
  sections.memory.replaceChildren(title, h('p', { class: 'muted' }, where), h('table', { class: 'grid memory-three', id: 'memory-table' }, h('tbody', null, ...rows)));
}

function render(next: SystemState | null): void {
  state = next;
  const root = app();
  if (!state) {
    root.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    return;
  }
  renderCpu(state);
  renderGpus(state);
  renderChart(state);
  renderMemory(state);
  if (root.firstElementChild?.tagName !== 'HEADER') {
    root.replaceChildren(h('header', null, h('h1', null, 'System')), sections.gpus, sections.chart, sections.memory, sections.cpu);
  }
}

function patch(p: SystemPatch): void {
  if (!state) return;
  const s = state;
  if (p.samples?.length) {
    const have = s.samples.length ? s.samples[s.samples.length - 1].seq : 0;
    const fresh = p.samples.filter((x) => x.seq > have);
    s.samples = [...s.samples, ...fresh].slice(-s.historyCapacity);
    renderChart(s);
  }
  if (p.cpu !== undefined || p.cpuError !== undefined) {
    if (p.cpu !== undefined) s.cpu = p.cpu;
    s.cpuError = p.cpuError;
    renderCpu(s);
  }
  if (p.gpus || p.gpuStatus) {
    if (p.gpus) s.gpus = p.gpus;
    if (p.gpuStatus) s.gpuStatus = p.gpuStatus;
    renderGpus(s);
  }
  if (p.memory) {
    s.memory = p.memory;
    renderMemory(s);
  }
}

startPanel<SystemState, SystemPatch>({ render, patch });
