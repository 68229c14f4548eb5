// The logic behind the GPU status bar item and the System panel (src/extension/systemModel.ts):
// ring buffer, architecture names, the engine's process line, the status bar's words in each
// sampler state, the memory breakdown, CPU load, and the shared history fed by a real (fake)
// nvidia-smi child. Expected values are worked out by hand in the comments.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { GpuInfo } from '../src/protocol/types';
import { GpuSampler } from '../src/system/gpuSampler';
import type { GpuSamplerStatus, GpuSnapshot } from '../src/system/gpuSampler';
import { parseGpuQueryCsv, type GpuProcess } from '../src/system/nvidiaSmiParse';
import {
  GpuHistory,
  RingBuffer,
  cpuLoadPct,
  engineGpuMemoryLine,
  gpuArchitecture,
  memorySection,
  statusBarView,
} from '../src/extension/systemModel';
import type { SystemSample } from '../src/protocol/webviewMessages';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const WAIT_MS = 20_000;

const H100: GpuInfo = {
  index: 0,
  name: 'NVIDIA H100 80GB HBM3',
  uuid: 'GPU-aaaa',
  memoryTotalMiB: 81559,
  memoryUsedMiB: 12595,
  utilizationPct: 87,
  temperatureC: 45,
  powerW: 312.45,
  powerLimitW: 700,
  computeCapability: '9.0',
  driverVersion: '550.54.15',
  cudaVersion: '12.4',
};
const A100: GpuInfo = {
  ...H100,
  index: 1,
  name: 'NVIDIA A100-SXM4-80GB',
  uuid: 'GPU-bbbb',
  memoryTotalMiB: 81920,
  memoryUsedMiB: 4,
  utilizationPct: 0,
  computeCapability: '8.0',
};

const running: GpuSamplerStatus = { state: 'running', available: true, starts: 1 };
const snap = (gpus: GpuInfo[], time = 0): GpuSnapshot => ({ time, gpus, unavailable: [] });

test('ring buffer keeps the newest `capacity` items, oldest first', () => {
  const r = new RingBuffer<number>(3);
  assert.deepEqual(r.toArray(), []);
  r.push(1);
  r.push(2);
  assert.deepEqual(r.toArray(), [1, 2]);
  for (const v of [3, 4, 5]) r.push(v);
  // 5 pushes into 3 slots: 1 and 2 fell out.
  assert.deepEqual(r.toArray(), [3, 4, 5]);
  assert.equal(r.length, 3);
  for (const v of [6, 7, 8, 9]) r.push(v);
  assert.deepEqual(r.toArray(), [7, 8, 9]);
  r.clear();
  assert.deepEqual(r.toArray(), []);
  assert.throws(() => new RingBuffer<number>(0), /positive integer/);
});

test('architecture names follow the CUDA programming guide', () => {
  const table: Array<[string | null, string | null]> = [
    ['7.0', 'Volta'],
    ['7.2', 'Volta'],
    ['7.5', 'Turing'],
    ['8.0', 'Ampere'],
    ['8.6', 'Ampere'],
    ['8.7', 'Ampere'],
    ['8.9', 'Ada Lovelace'],
    ['9.0', 'Hopper'],
    ['10.0', 'Blackwell'],
    ['10.3', 'Blackwell'],
    ['12.0', 'Blackwell'],
    ['6.1', 'Pascal'],
    [null, null],
    ['[N/A]', null],
    ['42.0', null],
  ];
  for (const [cc, arch] of table)
    assert.equal(gpuArchitecture(cc), arch, `compute capability ${cc}`);
});

test("the engine's process line names its memory per GPU, or says why there is none", () => {
  const engine = { kind: 'pytorch' as const, pid: 4242 };
  const gpus = [H100, A100];
  assert.equal(engineGpuMemoryLine(undefined, [], gpus), undefined);
  assert.equal(
    engineGpuMemoryLine(engine, undefined, gpus),
    'Model Lens pytorch engine (pid 4242): GPU memory not known yet',
  );
  const others: GpuProcess[] = [{ gpuUuid: 'GPU-aaaa', pid: 1, usedMemoryMiB: 9000 }];
  assert.equal(
    engineGpuMemoryLine(engine, others, gpus),
    'Model Lens pytorch engine (pid 4242): no GPU memory listed by nvidia-smi',
  );
  // 1536 MiB = 1.50 GiB; 300 MiB stays in MiB.
  const mine: GpuProcess[] = [
    ...others,
    { gpuUuid: 'GPU-aaaa', pid: 4242, usedMemoryMiB: 1536 },
    { gpuUuid: 'GPU-bbbb', pid: 4242, usedMemoryMiB: 300 },
  ];
  assert.equal(
    engineGpuMemoryLine(engine, mine, gpus),
    'Model Lens pytorch engine (pid 4242): 1.50 GiB on GPU 0, 300 MiB on GPU 1',
  );
  const mig: GpuProcess[] = [{ gpuUuid: 'GPU-aaaa', pid: 4242, usedMemoryMiB: null }];
  assert.equal(
    engineGpuMemoryLine(engine, mig, gpus),
    'Model Lens pytorch engine (pid 4242): GPU 0 (memory not reported by the driver)',
  );
});

test('status bar: figures of the run GPU, every GPU in the tooltip, the engine process line', () => {
  // 12595 MiB / 1024 = 12.30 GiB → 12.3; 81559 / 1024 = 79.65 → 79.6 (toFixed rounds 79.647 down).
  const one = statusBarView({ status: running, snapshot: snap([H100]) });
  assert.equal(one.text, 'GPU 12.3/79.6 GiB · 87%');
  assert.equal(one.live, true);
  // One line per figure (a status bar hover does not lay out tables).
  assert.match(
    one.tooltip,
    /\*\*GPU 0\*\* · NVIDIA H100 80GB HBM3 {2}\nMemory: 12\.3 \/ 79\.6 GiB {2}\nUtil: 87% {2}\nTemp: 45 °C {2}\nPower: 312 \/ 700 W/,
  );
  assert.match(one.tooltip, /Click for the System panel/);
  assert.doesNotMatch(one.tooltip, /engine/);

  // Two GPUs: the engine (pid 4242) holds memory on GPU 1, so GPU 1 is shown although GPU 0 is busier.
  const processes: GpuProcess[] = [{ gpuUuid: 'GPU-bbbb', pid: 4242, usedMemoryMiB: 2048 }];
  const two = statusBarView({
    status: running,
    snapshot: snap([H100, A100]),
    processes,
    engine: { kind: 'pytorch', pid: 4242 },
  });
  // 4 MiB / 1024 = 0.004 → 0.0; 81920 / 1024 = 80.0.
  assert.equal(two.text, 'GPU1 0.0/80.0 GiB · 0%');
  assert.match(two.tooltip, /NVIDIA H100 80GB HBM3/);
  assert.match(two.tooltip, /NVIDIA A100-SXM4-80GB/);
  assert.match(two.tooltip, /Model Lens pytorch engine \(pid 4242\): 2\.00 GiB on GPU 1/);
});

test('status bar: no driver is a quiet "No GPU" with the reason; a failing GPU keeps its last figures', () => {
  const reason = 'nvidia-smi is not on PATH (no NVIDIA driver installed?)';
  const none = statusBarView({
    status: { state: 'unavailable', available: false, reason, kind: 'notFound', starts: 0 },
  });
  assert.equal(none.text, 'No GPU');
  assert.equal(none.live, false);
  assert.match(none.tooltip, /nvidia-smi is not on PATH \(no NVIDIA driver installed\?\)/);

  const failed = statusBarView({
    status: {
      state: 'unavailable',
      available: false,
      reason: 'nvidia-smi printed no GPU row for 5 s (driver hung?)',
      kind: 'timeout',
      starts: 3,
    },
    snapshot: snap([H100]),
  });
  assert.equal(failed.text, 'GPU ?');
  // The reason has its own parentheses: no "(… (driver hung?))".
  assert.match(
    failed.tooltip,
    /GPU data unavailable\*\*: nvidia-smi printed no GPU row for 5 s \(driver hung\?\)\. Retrying\./,
  );
  assert.doesNotMatch(failed.tooltip, /\)\)/);
  assert.match(failed.tooltip, /12\.3 \/ 79\.6 GiB/);

  // nvidia-smi present but hung from the start: not "No GPU", since there may well be one.
  const hung = statusBarView({
    status: {
      state: 'unavailable',
      available: false,
      reason: 'nvidia-smi printed no GPU row for 20 s (driver hung?)',
      kind: 'timeout',
      starts: 1,
    },
  });
  assert.equal(hung.text, 'GPU ?');
  assert.match(hung.tooltip, /GPU data unavailable\*\*: nvidia-smi printed no GPU row for 20 s/);
  const banner = statusBarView({
    status: {
      state: 'unavailable',
      available: false,
      reason: "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
      kind: 'driver',
      starts: 1,
    },
  });
  assert.equal(banner.text, 'No GPU');

  const starting = statusBarView({ status: { state: 'starting', available: false, starts: 1 } });
  assert.equal(starting.text, 'GPU …');
});

test('memory three ways for a PyTorch run on CUDA, with hand-worked gaps', () => {
  const engine = { kind: 'pytorch' as const, pid: 4242, device: 'cuda:0' };
  const gpu: GpuInfo = { ...H100, memoryUsedMiB: 10 * 1024 };
  const processes: GpuProcess[] = [
    { gpuUuid: 'GPU-aaaa', pid: 4242, usedMemoryMiB: 6 * 1024 },
    { gpuUuid: 'GPU-aaaa', pid: 77, usedMemoryMiB: 4 * 1024 },
  ];
  const m = memorySection({
    engine,
    torch: { rssBytes: 0, torchAllocatedBytes: 3 * GIB, torchReservedBytes: 5 * GIB },
    gpus: [gpu],
    processes,
  });
  assert.equal(m.message, undefined);
  assert.deepEqual(
    m.figures?.map((f) => [f.key, f.bytes]),
    [
      ['allocated', 3 * GIB],
      ['reserved', 5 * GIB],
      ['device', 10 * GIB],
    ],
  );
  assert.equal(m.processBytes, 6 * GIB);
  assert.equal(m.gpuIndex, 0);
  // reserved − allocated = 2 GiB cached; process − reserved = 1 GiB overhead; device − process = 4 GiB others.
  assert.match(m.figures![1].explanation, /2\.00 GiB above live tensors/);
  assert.match(
    m.figures![2].explanation,
    /this process 6\.00 GiB; 1\.00 GiB of it beyond PyTorch's pool .*; other processes 4\.00 GiB/,
  );
});

test('memory section says plainly when there is nothing to break down', () => {
  const noGpu = memorySection({
    gpus: [],
    gpuReason: 'nvidia-smi is not on PATH (no NVIDIA driver installed?)',
  });
  assert.equal(
    noGpu.message,
    'No NVIDIA GPU, so there is no CUDA memory to break down: nvidia-smi is not on PATH (no NVIDIA driver installed?).',
  );
  const noEngine = memorySection({ gpus: [H100] });
  assert.match(noEngine.message ?? '', /^No PyTorch engine is running/);
  const tfjs = memorySection({ gpus: [H100], engine: { kind: 'tfjs', pid: 9 } });
  assert.match(tfjs.message ?? '', /^No PyTorch engine is running/);
  const cpuRun = memorySection({
    gpus: [H100],
    engine: { kind: 'pytorch', pid: 9, device: 'cpu' },
    torch: { rssBytes: 123 },
  });
  assert.equal(
    cpuRun.message,
    'The PyTorch engine has not used CUDA (its device is cpu), so torch reports no CUDA memory.',
  );
  assert.equal(cpuRun.figures, undefined);
});

test('CPU load is the busy share of the time between two readings', () => {
  const t = (user: number, sys: number, idle: number) => ({
    times: { user, nice: 0, sys, idle, irq: 0 },
  });
  // CPU 0: busy 100+50 of 300 elapsed; CPU 1: busy 0 of 100 → 150 / 400 = 37.5 %.
  const before = [t(100, 50, 850), t(10, 10, 980)];
  const after = [t(200, 100, 1000), t(10, 10, 1080)];
  assert.equal(cpuLoadPct(before, after), 37.5);
  assert.equal(cpuLoadPct(before, before), null);
});

test('GpuHistory records one sample per tick for all listeners and stops nvidia-smi after the last', async () => {
  const sampler = new GpuSampler({
    nvidiaSmiPath: path.join(__dirname, 'fixtures', 'nvidia-smi', 'bin', 'h100', 'nvidia-smi'),
    intervalMs: 100,
    processIntervalMs: 200,
  });
  after(() => sampler.dispose());
  const history = new GpuHistory(sampler, 4);
  const a: SystemSample[] = [];
  const b: SystemSample[] = [];
  let childPid: number | undefined;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error('no 6 samples from the fake h100 nvidia-smi')),
      WAIT_MS,
    );
    const subA = history.subscribe((s) => a.push(s));
    const subB = history.subscribe((s) => {
      b.push(s);
      childPid ??= sampler.childPids.gpu;
      if (b.length === 6) {
        clearTimeout(timer);
        subA.dispose();
        subB.dispose();
        resolve();
      }
    });
  });
  assert.deepEqual(
    a.map((s) => s.seq),
    [1, 2, 3, 4, 5, 6],
  );
  assert.deepEqual(a, b);
  // The fixture's memory.used is 1234 MiB at tick 0 and grows by 16 MiB a tick; total 81559 MiB; 87 %.
  const first = a[0].gpus[0].memoryUsedMiB!;
  assert.equal((first - 1234) % 16, 0);
  a.forEach((s, i) => {
    assert.deepEqual(s.gpus, [
      { index: 0, memoryUsedMiB: first + 16 * i, memoryTotalMiB: 81559, utilizationPct: 87 },
    ]);
  });
  // Capacity 4: the ring kept samples 3..6.
  assert.deepEqual(
    history.samples.toArray().map((s) => s.seq),
    [3, 4, 5, 6],
  );
  assert.equal(history.listening, false);
  await sampler.whenStopped();
  const gone = (pid: number) => {
    try {
      process.kill(pid, 0);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
  };
  assert.ok(
    childPid !== undefined && gone(childPid),
    `nvidia-smi child ${childPid} still runs after the last listener left`,
  );

  // The status bar text for that stream, worked by hand from the fixture: 1234 MiB → 1.2 GiB.
  const view = statusBarView({
    status: running,
    snapshot: {
      time: 0,
      unavailable: [],
      gpus: [{ ...H100, memoryUsedMiB: 1234, memoryTotalMiB: 81559 }],
    },
  });
  assert.equal(view.text, 'GPU 1.2/79.6 GiB · 87%');
});

test("the engine process line from a real per-process stream (the fake reports its parent's pid)", async () => {
  const sampler = new GpuSampler({
    nvidiaSmiPath: path.join(__dirname, 'fixtures', 'nvidia-smi', 'bin', 'h100', 'nvidia-smi'),
    intervalMs: 100,
    processIntervalMs: 200,
  });
  after(() => sampler.dispose());
  const processes = await new Promise<GpuProcess[]>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error('no process list from the fake h100 nvidia-smi')),
      WAIT_MS,
    );
    const sub = sampler.onProcesses((p) => {
      if (p.length > 0 && sampler.latest) {
        clearTimeout(timer);
        sub.dispose();
        resolve(p);
      }
    });
  });
  const view = statusBarView({
    status: sampler.status,
    snapshot: sampler.latest,
    processes,
    engine: { kind: 'pytorch', pid: process.pid },
  });
  // used_memory is 1224 + 16·tick MiB: 1224/1024 = 1.195 → "1.20 GiB", then 1.21, 1.23, ...
  const m = /Model Lens pytorch engine \(pid (\d+)\): (\d+\.\d\d) GiB on GPU 0/.exec(view.tooltip);
  assert.ok(m, view.tooltip);
  assert.equal(Number(m[1]), process.pid);
  const gib = Number(m[2]);
  assert.ok(gib >= 1.19 && gib < 2, `engine memory ${gib} GiB`);
});

test('a crashing nvidia-smi (real child, killed after one tick) degrades to "GPU data unavailable" with the last figures', async () => {
  const sampler = new GpuSampler({
    nvidiaSmiPath: path.join(__dirname, 'fixtures', 'nvidia-smi', 'bin', 'crash', 'nvidia-smi'),
    intervalMs: 100,
    backoffInitialMs: 5_000,
  });
  after(() => sampler.dispose());
  const status = await new Promise<GpuSamplerStatus>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the crash fixture never failed')), WAIT_MS);
    const subStatus = sampler.onStatus((s) => {
      if (s.state === 'unavailable' && sampler.latest) {
        clearTimeout(timer);
        subStatus.dispose();
        resolve(s);
      }
    });
    sampler.onSnapshot(() => undefined);
  });
  const view = statusBarView({ status, snapshot: sampler.latest });
  assert.equal(view.text, 'GPU ?');
  assert.equal(view.live, false);
  assert.match(view.tooltip, /\*\*GPU data unavailable\*\*: .+ Retrying\./);
  // The one tick it printed (tick 0: 1234 MiB of 81559) stays in the tooltip: 1.2 / 79.6 GiB.
  assert.match(view.tooltip, /NVIDIA H100 80GB HBM3 {2}\nMemory: 1\.2 \/ 79\.6 GiB {2}\nUtil: 87%/);
});

test('status bar on a real H200 capture: one line per figure, read off the file by hand', () => {
  // recorded/h200-real.csv is nvidia-smi 580.159.04 on an H200 (the device machine, idle):
  // 143771 MiB / 1024 = 140.40 → "140.4"; 0 MiB used; 0 %; 37 °C; 78.08 of 700.00 W.
  const csv = fs.readFileSync(
    path.join(__dirname, 'fixtures', 'nvidia-smi', 'recorded', 'h200-real.csv'),
    'utf8',
  );
  const parsed = parseGpuQueryCsv(csv);
  assert.ok(parsed.ok, JSON.stringify(parsed));
  const view = statusBarView({ status: running, snapshot: snap(parsed.gpus) });
  assert.equal(view.text, 'GPU 0.0/140.4 GiB · 0%');
  assert.match(
    view.tooltip,
    /^NVIDIA driver 580\.159\.04\n\n\*\*GPU 0\*\* · NVIDIA H200 {2}\nMemory: 0\.0 \/ 140\.4 GiB {2}\nUtil: 0% {2}\nTemp: 37 °C {2}\nPower: 78 \/ 700 W/,
  );
  assert.equal(gpuArchitecture(parsed.gpus[0].computeCapability), 'Hopper');
});
