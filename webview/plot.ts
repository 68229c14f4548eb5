// Every chart in the Model Lens webviews is a uPlot chart (https://github.com/leeoniya/uPlot):
// ~50 KB, canvas-drawn, fast for long time series, and CSP-friendly — it sets element styles only
// through CSSOM (`el.style.x = …`), which `style-src` does not block, and needs no eval. Canvas
// cannot read CSS variables, so colours are resolved from the `--vscode-*` theme variables here
// and every chart is rebuilt when VS Code switches theme (it changes the body's class).
import uPlot from 'uplot';

/** Colours and font a chart draws with, resolved from the current VS Code theme. */
export interface ChartTheme {
  foreground: string;
  muted: string;
  grid: string;
  background: string;
  /** Series colours in order: train/memory first, eval/utilization second. */
  series: string[];
  font: string;
}

const FALLBACK_SERIES = ['#3794ff', '#d18616', '#89d185', '#f14c4c', '#b180d7', '#cca700'];

function cssVar(style: CSSStyleDeclaration, name: string, fallback: string): string {
  return style.getPropertyValue(name).trim() || fallback;
}

export function readTheme(): ChartTheme {
  const s = getComputedStyle(document.body);
  const fg = cssVar(s, '--vscode-charts-foreground', cssVar(s, '--vscode-foreground', '#cccccc'));
  const series = ['blue', 'orange', 'green', 'red', 'purple', 'yellow'].map((c, i) =>
    cssVar(s, `--vscode-charts-${c}`, FALLBACK_SERIES[i]),
  );
  const size = cssVar(s, '--vscode-font-size', '13px');
  const family = cssVar(s, '--vscode-font-family', 'sans-serif');
  return {
    foreground: fg,
    muted: cssVar(s, '--vscode-descriptionForeground', fg),
    grid: cssVar(s, '--vscode-charts-lines', 'rgba(128,128,128,0.35)'),
    background: cssVar(s, '--vscode-editor-background', '#1e1e1e'),
    series,
    font: `${size} ${family}`,
  };
}

/** `#rrggbb` (or any CSS colour canvas accepts) at the given opacity, for fills. */
export function withAlpha(color: string, alpha: number): string {
  const m = /^#([0-9a-f]{6})([0-9a-f]{2})?$/i.exec(color);
  if (!m) return color;
  const a = Math.round(Math.max(0, Math.min(1, alpha)) * 255)
    .toString(16)
    .padStart(2, '0');
  return `#${m[1]}${a}`;
}

/** Axis styling shared by every chart: theme colours, grid, room for labels so none overlap. */
export function axis(theme: ChartTheme, extra: uPlot.Axis = {}): uPlot.Axis {
  return {
    stroke: theme.muted,
    font: theme.font,
    labelFont: theme.font,
    grid: { stroke: theme.grid, width: 1 },
    ticks: { stroke: theme.grid, width: 1, size: 4 },
    ...extra,
  };
}

/** The x axis: tick labels and the axis label close together. */
export function xAxis(theme: ChartTheme, label?: string, extra: uPlot.Axis = {}): uPlot.Axis {
  return axis(theme, {
    size: 30,
    ...(label ? { label, labelSize: 16, labelGap: 0 } : {}),
    ...extra,
  });
}

/** Height of a chart in CSS pixels; the width follows its container. */
export const CHART_HEIGHT_PX = 220;
const MIN_WIDTH_PX = 200;

/** What a chart needs to (re)build itself: options for a theme and width, and its data. */
export interface ChartSpec {
  options(theme: ChartTheme, width: number): uPlot.Options;
  data(): uPlot.AlignedData;
}

/**
 * A uPlot chart that follows its container's width and the theme. `update()` keeps the user's
 * zoom when new points arrive (TensorBoard keeps it too), unless the chart was never zoomed.
 */
export class Chart {
  private plot: uPlot | undefined;
  private readonly resize: ResizeObserver;

  constructor(
    readonly element: HTMLElement,
    private readonly spec: ChartSpec,
  ) {
    element.classList.add('chart');
    this.resize = new ResizeObserver(() => this.fit());
    this.resize.observe(element);
    charts.add(this);
    this.build();
  }

  update(): void {
    if (!this.plot) return this.build();
    const keep = this.zoomedRange();
    this.plot.setData(this.spec.data(), !keep);
    if (keep) this.plot.setScale('x', keep);
  }

  /** The x range the user zoomed to (drag), or null when the chart shows all its data. */
  private zoomedRange(): { min: number; max: number } | null {
    const u = this.plot;
    if (!u) return null;
    const xs = u.data[0];
    const { min, max } = u.scales.x;
    if (!xs.length || min === undefined || max === undefined || min === null || max === null)
      return null;
    const lo = xs[0];
    const hi = xs[xs.length - 1];
    return min > lo || max < hi ? { min, max } : null;
  }

  /** Rebuilds from scratch: a new theme, or options that changed (log scale). */
  build(): void {
    this.plot?.destroy();
    const width = this.width();
    this.plot = new uPlot(this.spec.options(readTheme(), width), this.spec.data(), this.element);
  }

  dispose(): void {
    this.resize.disconnect();
    this.plot?.destroy();
    this.plot = undefined;
    charts.delete(this);
  }

  get uplot(): uPlot | undefined {
    return this.plot;
  }

  private width(): number {
    return Math.max(MIN_WIDTH_PX, Math.floor(this.element.clientWidth || MIN_WIDTH_PX));
  }

  private fit(): void {
    if (!this.element.isConnected) return this.dispose();
    const width = this.width();
    if (this.plot && Math.abs(this.plot.width - width) > 1) {
      this.plot.setSize({ width, height: this.plot.height });
    }
  }
}

const charts = new Set<Chart>();

// VS Code marks the theme kind on <body> and swaps the CSS variables with it.
new MutationObserver(() => {
  for (const c of [...charts]) {
    if (c.element.isConnected) c.build();
    else c.dispose();
  }
}).observe(document.body, { attributes: true, attributeFilter: ['class'] });

export { uPlot };
