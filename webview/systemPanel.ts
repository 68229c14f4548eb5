// Model Lens: System — CPU, GPUs, a live chart of GPU memory and utilization, and the PyTorch
// memory breakdown. The extension sends one full state, then patches that append samples.
import { formatBytes } from '../src/shared/format';
import { h } from './dom';
import { axis, Chart, xAxis, CHART_HEIGHT_PX, withAlpha, type uPlot } from './plot';
import { app, startPanel } from './host';
import type { CpuInfo, GpuInfo } from '../src/protocol/types';
import type {
  GpuRow,
  GpuSample,
  SystemPanelPatch,
  SystemPanelState,
  SystemSample,
} from '../src/protocol/webviewMessages';

type SystemState = SystemPanelState;
type SystemPatch = SystemPanelPatch;

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
  return h(
    'table',
    { class: 'grid facts', id },
    h(
      'tbody',
      null,
      ...rows.map(([k, v]) => h('tr', null, h('th', { scope: 'row' }, k), h('td', null, v))),
    ),
  );
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
    : h(
        'p',
        { class: s.cpuError ? 'error' : 'muted' },
        s.cpuError ? `CPU facts unavailable: ${s.cpuError}` : 'Reading CPU facts…',
      );
  sections.cpu.replaceChildren(h('h2', null, 'CPU'), body);
}

function gpuStatusText(s: SystemState): string {
  if (s.gpuStatus.state === 'unavailable')
    return `No NVIDIA GPU data: ${(s.gpuStatus.reason ?? 'nvidia-smi is not answering').replace(/\.$/, '')}.`;
  if (s.gpuStatus.state === 'starting' || s.gpuStatus.state === 'idle')
    return 'Waiting for nvidia-smi…';
  return 'nvidia-smi reported no GPU.';
}

function renderGpus(s: SystemState): void {
  if (s.gpus.length === 0) {
    sections.gpus.replaceChildren(
      h('h2', null, 'GPUs'),
      h('p', { class: 'muted', id: 'gpu-none' }, gpuStatusText(s)),
    );
    return;
  }
  const stale =
    s.gpuStatus.state === 'unavailable'
      ? h(
          'p',
          { class: 'warning' },
          `GPU data unavailable: ${(s.gpuStatus.reason ?? 'nvidia-smi stopped answering').replace(/\.$/, '')}. Showing the last figures.`,
        )
      : null;
  const rows = s.gpus.map((g) =>
    h(
      'tr',
      { 'data-gpu': g.index },
      h('td', { class: 'num' }, g.index),
      h('td', { class: 'gpu-name' }, g.name),
      h(
        'td',
        null,
        g.computeCapability
          ? `${g.computeCapability}${g.architecture ? ` (${g.architecture})` : ''}`
          : '—',
      ),
      h('td', { class: 'num' }, gib(g.memoryTotalMiB)),
      h('td', { class: 'num' }, `${gib(g.memoryUsedMiB)}`),
      h(
        'td',
        { class: 'num' },
        g.utilizationPct === null ? (g.mig ? 'MIG' : '—') : `${Math.round(g.utilizationPct)} %`,
      ),
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
          ...[
            '#',
            'Name',
            'Compute capability',
            'VRAM',
            'Used',
            'Util',
            'Temp',
            'Driver',
            'CUDA',
          ].map((t, i) => h('th', { class: i === 0 || (i >= 3 && i <= 6) ? 'num' : undefined }, t)),
        ),
      ),
      h('tbody', null, ...rows),
    ),
  );
}

/** One chart per GPU, kept across samples so hover and zoom survive the next tick. */
const gpuCharts = new Map<number, Chart>();

function gpuSeries(s: SystemState, index: number): uPlot.AlignedData {
  const t: number[] = [];
  const mem: (number | null)[] = [];
  const util: (number | null)[] = [];
  for (const p of s.samples) {
    const g = p.gpus.find((x) => x.index === index);
    t.push(p.time / 1000);
    mem.push(g?.memoryUsedMiB != null ? g.memoryUsedMiB / MIB_PER_GIB : null);
    util.push(g?.utilizationPct ?? null);
  }
  return [t, mem, util];
}

/**
 * Memory used (GiB, left axis, up to the card's total) and utilization (%, right axis) over the
 * samples kept; the time axis spans the samples there are, so the first minute is not an empty
 * chart with a dot at its right edge.
 */
function gpuChart(index: number): Chart {
  const el = h('div', { class: 'gpu-chart', 'data-gpu': index });
  return new Chart(el, {
    data: () => (state ? gpuSeries(state, index) : [[], [], []]),
    options: (theme, width) => {
      const total = state?.gpus.find((g) => g.index === index)?.memoryTotalMiB ?? null;
      return {
        width,
        height: CHART_HEIGHT_PX,
        legend: { show: true, live: true },
        cursor: { drag: { x: true, y: false } },
        scales: {
          x: { time: true },
          mem: { range: (_u, _lo, hi) => [0, total ? total / MIB_PER_GIB : Math.max(1, hi)] },
          pct: { range: [0, 100] },
        },
        axes: [
          // Time ticks take two lines (time, then the date under the first tick).
          xAxis(theme, undefined, { size: 44 }),
          axis(theme, { scale: 'mem', label: 'memory (GiB)', labelSize: 18, size: 50 }),
          axis(theme, {
            scale: 'pct',
            label: 'utilization (%)',
            labelSize: 18,
            side: 1,
            size: 50,
            grid: { show: false },
          }),
        ],
        series: [
          {},
          {
            label: 'memory used',
            scale: 'mem',
            stroke: theme.series[0],
            fill: withAlpha(theme.series[0], 0.15),
            width: 1.5,
            value: (_u, v) => (v === null ? '--' : `${v.toFixed(2)} GiB`),
            points: { show: false },
          },
          {
            label: 'utilization',
            scale: 'pct',
            stroke: theme.series[1],
            width: 1.5,
            value: (_u, v) => (v === null ? '--' : `${Math.round(v)} %`),
            points: { show: false },
          },
        ],
      };
    },
  });
}

function renderChart(s: SystemState): void {
  const indices = [...new Set(s.samples.flatMap((p) => p.gpus.map((g) => g.index)))].sort(
    (a, b) => a - b,
  );
  if (indices.length === 0) {
    for (const c of gpuCharts.values()) c.dispose();
    gpuCharts.clear();
    sections.chart.replaceChildren();
    return;
  }
  const fresh = indices.some((i) => !gpuCharts.has(i));
  for (const i of indices) {
    const existing = gpuCharts.get(i);
    if (existing) existing.update();
    else gpuCharts.set(i, gpuChart(i));
    const n = s.samples.filter((p) => p.gpus.some((g) => g.index === i)).length;
    gpuCharts.get(i)!.element.dataset.samples = String(n);
  }
  if (!fresh) return;
  const minutes = Math.round((s.historyCapacity * SAMPLE_INTERVAL_S) / 60);
  sections.chart.replaceChildren(
    h('h2', null, 'GPU memory and utilization'),
    h(
      'p',
      { class: 'muted' },
      `The last ${minutes} minutes, one sample per second. Drag to zoom, double-click to reset.`,
    ),
    h(
      'div',
      { class: 'charts' },
      ...indices.map((i) =>
        h(
          'figure',
          { class: 'system-figure wide', 'data-gpu': i },
          gpuCharts.get(i)!.element,
          h('figcaption', null, `GPU ${i}`),
        ),
      ),
    ),
  );
  // A chart built while detached measured no width; now it is in the page.
  for (const c of gpuCharts.values()) c.build();
}

function renderMemory(s: SystemState): void {
  const m = s.memory;
  const title = h('h2', null, 'GPU memory, three ways');
  if (!m.figures) {
    sections.memory.replaceChildren(
      title,
      h('p', { class: 'muted', id: 'memory-message' }, m.message ?? ''),
    );
    return;
  }
  const rows = m.figures.map((f) =>
    h(
      'tr',
      { 'data-figure': f.key },
      h('th', { scope: 'row' }, f.label),
      h('td', { class: 'num' }, f.bytes === null ? '—' : formatBytes(f.bytes)),
      h('td', { class: 'note' }, f.explanation),
    ),
  );
  if (m.processBytes !== undefined) {
    rows.splice(
      2,
      0,
      h(
        'tr',
        { 'data-figure': 'process' },
        h('th', { scope: 'row' }, 'This process'),
        h('td', { class: 'num' }, m.processBytes === null ? '—' : formatBytes(m.processBytes)),
        h(
          'td',
          { class: 'note' },
          m.processBytes === null
            ? 'nvidia-smi did not attribute memory to the engine process (MIG or WDDM, or not yet sampled).'
            : `What nvidia-smi counts for the engine process (pid ${m.engine?.pid ?? '?'}) alone: PyTorch's pool plus the CUDA context.`,
        ),
      ),
    );
  }
  const where = m.engine
    ? `${m.engine.kind} engine, pid ${m.engine.pid}${m.gpuIndex !== undefined ? `, GPU ${m.gpuIndex}` : ''}`
    : '';
  sections.memory.replaceChildren(
    title,
    h('p', { class: 'muted' }, where),
    h('table', { class: 'grid memory-three', id: 'memory-table' }, h('tbody', null, ...rows)),
  );
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
    root.replaceChildren(
      h('header', null, h('h1', null, 'System')),
      sections.gpus,
      sections.chart,
      sections.memory,
      sections.cpu,
    );
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
