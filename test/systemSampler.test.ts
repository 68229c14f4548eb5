// GpuSampler lifecycle against fake nvidia-smi executables (test/fixtures/nvidia-smi/bin/<case>/):
// real child processes that stream, stall, crash, print the driver banner, hang or cannot run.
// No timing is asserted beyond lower bounds that load cannot break.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GpuSampler } from '../src/system/gpuSampler';
import type { GpuSamplerOptions, GpuSamplerStatus, GpuSnapshot } from '../src/system/gpuSampler';
import { queryComputeAppsOnce, queryGpusOnce } from '../src/system/nvidiaSmi';
import type { GpuProcess } from '../src/system/nvidiaSmiParse';

const BIN = path.join(__dirname, 'fixtures', 'nvidia-smi', 'bin');
const fake = (scenario: string) => path.join(BIN, scenario, 'nvidia-smi');
/** Generous: the box runs other suites at the same time. */
const WAIT_MS = 20_000;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'model-lens-sampler-'));
const samplers: GpuSampler[] = [];
after(async () => {
  await Promise.all(samplers.map((s) => s.dispose()));
  fs.rmSync(tmp, { recursive: true, force: true });
});

let logCount = 0;
function startLog(): string {
  const file = path.join(tmp, `starts-${++logCount}.log`);
  fs.writeFileSync(file, '');
  return file;
}
function readStarts(file: string): Array<{ ms: number; pid: number; args: string }> {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('hang'))
    .map((l) => {
      const [ms, pid, ...args] = l.split(' ');
      return { ms: Number(ms), pid: Number(pid), args: args.join(' ') };
    });
}

function makeSampler(
  scenario: string,
  logFile: string,
  extra: GpuSamplerOptions = {},
): { sampler: GpuSampler; logs: string[] } {
  const logs: string[] = [];
  const sampler = new GpuSampler({
    nvidiaSmiPath: fake(scenario),
    intervalMs: 100,
    processIntervalMs: 200,
    backoffInitialMs: 100,
    backoffMaxMs: 2000,
    stallTimeoutMs: 1500,
    firstRowTimeoutMs: 10_000,
    env: { ...process.env, FAKE_NVIDIA_SMI_LOG: logFile },
    log: (m) => logs.push(m),
    ...extra,
  });
  samplers.push(sampler);
  return { sampler, logs };
}

function withTimeout<T>(p: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

function collectSnapshots(sampler: GpuSampler, n: number): Promise<GpuSnapshot[]> {
  const got: GpuSnapshot[] = [];
  return withTimeout(
    new Promise((resolve) => {
      const sub = sampler.onSnapshot((s) => {
        got.push(s);
        if (got.length === n) {
          sub.dispose();
          resolve(got);
        }
      });
    }),
    `${n} snapshots`,
  );
}

function statusWhere(
  sampler: GpuSampler,
  pred: (s: GpuSamplerStatus) => boolean,
  what: string,
): Promise<GpuSamplerStatus> {
  return withTimeout(
    new Promise((resolve) => {
      const sub = sampler.onStatus((s) => {
        if (pred(s)) {
          sub.dispose();
          resolve(s);
        }
      });
    }),
    what,
  );
}

function pidGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Live processes whose process group is `pgid` (from /proc, so grandchildren count). */
function processesInGroup(pgid: number): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // fields[0] state, [1] ppid, [2] pgrp; a zombie is already dead.
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') found.push(Number(entry));
    } catch {
      // Exited while we looked.
    }
  }
  return found;
}

async function eventually(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`never became true: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('streams snapshots from ONE long-lived child, and stopping kills it', async () => {
  const log = startLog();
  const { sampler } = makeSampler('h100', log);
  const snaps = await collectSnapshots(sampler, 4);
  for (const s of snaps) {
    assert.equal(s.gpus.length, 1);
    assert.equal(s.gpus[0].name, 'NVIDIA H100 80GB HBM3');
    assert.equal(s.gpus[0].memoryTotalMiB, 81559);
  }
  // The fake adds 16 MiB per tick: consecutive snapshots are consecutive ticks, none lost or merged.
  const used = snaps.map((s) => s.gpus[0].memoryUsedMiB as number);
  assert.deepEqual(
    used.slice(1).map((u, i) => u - used[i]),
    [16, 16, 16],
  );
  const pid = readStarts(log)[0].pid;
  // The last listener went: the child is stopped.
  await withTimeout(sampler.whenStopped(), 'stop');
  assert.ok(pidGone(pid), `child ${pid} still alive after the last listener left`);
  assert.ok(!fs.existsSync(`/proc/${pid}`));
  assert.equal(sampler.status.state, 'idle');
  const starts = readStarts(log).filter((s) => s.args.includes('--query-gpu='));
  assert.equal(starts.length, 1, 'a streaming sampler must not respawn nvidia-smi per tick');
  assert.match(starts[0].args, /--format=csv,noheader,nounits -lms 100$/);
});

test('eight GPUs per tick are grouped into one snapshot', async () => {
  const { sampler } = makeSampler('dgx', startLog());
  const snaps = await collectSnapshots(sampler, 3);
  for (const s of snaps)
    assert.deepEqual(
      s.gpus.map((g) => g.index),
      [0, 1, 2, 3, 4, 5, 6, 7],
    );
  assert.equal(snaps[0].gpus[6].memoryUsedMiB, 78211);
  await sampler.dispose();
});

test('starts lazily: nothing runs until a snapshot listener, a status listener alone does not start it', async () => {
  const log = startLog();
  const { sampler } = makeSampler('h100', log);
  const statusSub = sampler.onStatus(() => {});
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(readStarts(log).length, 0);
  assert.equal(sampler.childPids.gpu, undefined);
  assert.equal(sampler.status.state, 'idle');
  const first = collectSnapshots(sampler, 1);
  // Subscribing returns at once; the first snapshot comes later.
  assert.equal(sampler.latest, undefined);
  await first;
  assert.equal(readStarts(log).length >= 1, true);
  statusSub.dispose();
  await sampler.dispose();
});

test('an old driver that rejects compute_cap is asked again without it', async () => {
  const log = startLog();
  const { sampler, logs } = makeSampler('old-driver', log);
  const [snap] = await collectSnapshots(sampler, 1);
  assert.equal(snap.gpus[0].name, 'Tesla V100-SXM2-32GB');
  assert.equal(snap.gpus[0].computeCapability, null);
  assert.equal(snap.gpus[0].driverVersion, '470.182.03');
  const gpuStarts = readStarts(log).filter((s) => s.args.includes('--query-gpu='));
  assert.match(gpuStarts[0].args, /compute_cap/);
  assert.doesNotMatch(gpuStarts[1].args, /compute_cap/);
  assert.equal(logs.filter((m) => m.includes('compute_cap')).length, 1);
  await sampler.dispose();
});

test('a child that keeps crashing is restarted with doubling delays, logged once', async () => {
  const log = startLog();
  const { sampler, logs } = makeSampler('crash', log);
  const retries: number[] = [];
  const done = statusWhere(
    sampler,
    (s) => {
      if (s.state === 'unavailable' && s.retryInMs !== undefined) retries.push(s.retryInMs);
      return retries.length >= 4;
    },
    '4 crash restarts',
  );
  sampler.onSnapshot(() => {});
  await done;
  assert.deepEqual(retries, [100, 200, 400, 800]);
  const starts = readStarts(log).filter((s) => s.args.includes('--query-gpu='));
  assert.ok(starts.length >= 4);
  for (let i = 0; i + 1 < 4; i++) {
    // Each restart waited at least its backoff delay (a lower bound holds on a loaded box).
    assert.ok(
      starts[i + 1].ms - starts[i].ms >= retries[i] - 5,
      `restart ${i + 1} came after ${starts[i + 1].ms - starts[i].ms} ms, backoff ${retries[i]} ms`,
    );
  }
  assert.equal(
    logs.filter((m) => m.startsWith('GPU monitor unavailable') && m.includes('SIGKILL')).length,
    1,
  );
  assert.equal(sampler.status.available, false);
  assert.equal(sampler.status.kind, 'exited');
  await sampler.dispose();
  for (const s of starts) assert.ok(pidGone(s.pid));
});

test('a child that goes silent is killed and restarted', async () => {
  const log = startLog();
  const { sampler } = makeSampler('stall', log, { stallTimeoutMs: 600 });
  const stalled = statusWhere(sampler, (s) => s.kind === 'timeout', 'stall detection');
  sampler.onSnapshot(() => {});
  const status = await stalled;
  assert.equal(status.available, false);
  assert.match(status.reason ?? '', /no GPU row for 0\.6 s/);
  const firstPid = readStarts(log).find((s) => s.args.includes('--query-gpu='))!.pid;
  await eventually(() => pidGone(firstPid), 'stalled child killed');
  await statusWhere(sampler, (s) => s.available && s.starts >= 2, 'restarted child answering');
  await sampler.dispose();
});

test("the driver-failure banner makes the sampler unavailable with nvidia-smi's words", async () => {
  const { sampler } = makeSampler('banner', startLog());
  const failed = statusWhere(sampler, (s) => s.state === 'unavailable', 'driver failure');
  sampler.onSnapshot(() => assert.fail('no snapshot expected'));
  const status = await failed;
  assert.equal(status.kind, 'driver');
  assert.match(status.reason ?? '', /couldn't communicate with the NVIDIA driver/);
  await sampler.dispose();
});

test('garbage output is reported as an unknown format', async () => {
  const { sampler } = makeSampler('garbage', startLog(), { firstRowTimeoutMs: 700 });
  const failed = statusWhere(sampler, (s) => s.state === 'unavailable', 'unknown format');
  sampler.onSnapshot(() => {});
  const status = await failed;
  assert.equal(status.kind, 'unknownFormat');
  assert.match(status.reason ?? '', /GPU 0: NVIDIA H100/);
  await sampler.dispose();
});

test('missing and non-executable nvidia-smi: unavailable with the reason, retried quietly', async () => {
  const missing = new GpuSampler({
    nvidiaSmiPath: path.join(tmp, 'nope', 'nvidia-smi'),
    backoffInitialMs: 50,
    backoffMaxMs: 200,
  });
  samplers.push(missing);
  const a = statusWhere(missing, (s) => s.state === 'unavailable', 'missing');
  missing.onSnapshot(() => {});
  assert.equal((await a).kind, 'notFound');

  const emptyDir = fs.mkdtempSync(path.join(tmp, 'empty-path-'));
  const onPath = new GpuSampler({ env: { ...process.env, PATH: emptyDir }, backoffInitialMs: 50 });
  samplers.push(onPath);
  const b = statusWhere(onPath, (s) => s.state === 'unavailable', 'not on PATH');
  onPath.onSnapshot(() => {});
  const sb = await b;
  assert.equal(sb.kind, 'notFound');
  assert.match(sb.reason ?? '', /not on PATH/);

  const logs: string[] = [];
  const noExec = new GpuSampler({
    nvidiaSmiPath: fake('not-executable'),
    backoffInitialMs: 20,
    backoffMaxMs: 40,
    log: (m) => logs.push(m),
  });
  samplers.push(noExec);
  let failures = 0;
  const c = statusWhere(
    noExec,
    (s) => s.state === 'unavailable' && ++failures >= 3,
    'not executable x3',
  );
  noExec.onSnapshot(() => {});
  assert.equal((await c).kind, 'notExecutable');
  assert.equal(logs.length, 1, `one log line per distinct failure, got ${JSON.stringify(logs)}`);
  await Promise.all([missing.dispose(), onPath.dispose(), noExec.dispose()]);
});

test('a hanging nvidia-smi never blocks: the sampler and the one-shot query time out and leave nothing behind', async () => {
  const log = startLog();
  const env = { ...process.env, FAKE_NVIDIA_SMI_LOG: log };
  const { sampler } = makeSampler('hang', log, { firstRowTimeoutMs: 500 });
  let tickedBeforeStatus = false;
  const timedOut = statusWhere(sampler, (s) => s.kind === 'timeout', 'hang detection');
  sampler.onSnapshot(() => {});
  setImmediate(() => (tickedBeforeStatus = sampler.status.kind === undefined));
  await timedOut;
  assert.ok(tickedBeforeStatus, 'the event loop kept running while nvidia-smi hung');
  await sampler.dispose();

  const result = await withTimeout(
    queryGpusOnce({ nvidiaSmiPath: fake('hang'), timeoutMs: 500, env }),
    'one-shot query',
  );
  assert.equal(result.ok, false);
  assert.equal(!result.ok && result.kind, 'timeout');
  // Every hanging shell and its sleep grandchild are gone (group kill).
  const groups = fs
    .readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('hang '))
    .map((l) => Number(l.split(' ')[1]));
  assert.ok(groups.length >= 2);
  for (const pgid of groups)
    await eventually(() => processesInGroup(pgid).length === 0, `group ${pgid} gone`);
});

test('per-process memory streams while someone listens, and stops when they leave', async () => {
  const log = startLog();
  const { sampler } = makeSampler('h100', log);
  const snapSub = sampler.onSnapshot(() => {});
  const lists = await withTimeout(
    new Promise<GpuProcess[][]>((resolve) => {
      const got: GpuProcess[][] = [];
      const sub = sampler.onProcesses((p) => {
        if (p.length > 0) got.push(p);
        if (got.length === 2) {
          sub.dispose();
          resolve(got);
        }
      });
    }),
    'two process lists',
  );
  // The fake reports its parent (this test process) as the run, at 1224 MiB + 16 per tick.
  assert.equal(lists[0][0].pid, process.pid);
  assert.equal(lists[0][0].gpuUuid, 'GPU-4a8c2e6f-9b1d-3c57-e0a2-7f6b8d9c1e34');
  assert.equal((lists[1][0].usedMemoryMiB as number) - (lists[0][0].usedMemoryMiB as number), 16);
  const appsPid = readStarts(log).find((s) => s.args.includes('--query-compute-apps='))!.pid;
  await eventually(() => pidGone(appsPid), 'process stream stopped with its last listener');
  // The GPU stream goes on for the snapshot listener.
  assert.ok(sampler.childPids.gpu !== undefined);
  await collectSnapshots(sampler, 1);
  snapSub.dispose();
  await sampler.whenStopped();
});

test('no process on the GPU: empty lists, and the silent process stream is not restarted', async () => {
  const log = startLog();
  const { sampler } = makeSampler('idle', log, { firstRowTimeoutMs: 300, processIntervalMs: 150 });
  const empties = await withTimeout(
    new Promise<number>((resolve) => {
      let n = 0;
      const sub = sampler.onProcesses((p) => {
        assert.deepEqual(p, []);
        // Several empty ticks span well past the 300 ms first-row timeout.
        if (++n === 5) {
          sub.dispose();
          resolve(n);
        }
      });
    }),
    'five empty process lists',
  );
  assert.equal(empties, 5);
  const appsStarts = readStarts(log).filter((s) => s.args.includes('--query-compute-apps='));
  assert.equal(
    appsStarts.length,
    1,
    'silence from --query-compute-apps means no process, not a hang',
  );
  await sampler.dispose();
});

test('a throwing listener does not stop the others', async () => {
  const { sampler, logs } = makeSampler('h100', startLog());
  sampler.onSnapshot(() => {
    throw new Error('listener bug');
  });
  await collectSnapshots(sampler, 2);
  assert.equal(logs.filter((m) => m.includes('listener bug')).length, 1);
  await sampler.dispose();
});

test('one-shot queries: GPUs with the CUDA version, and processes', async () => {
  const gpus = await queryGpusOnce({ nvidiaSmiPath: fake('dgx') });
  assert.ok(gpus.ok);
  assert.equal(gpus.gpus.length, 8);
  assert.ok(gpus.gpus.every((g) => g.cudaVersion === '12.4'));
  const old = await queryGpusOnce({ nvidiaSmiPath: fake('old-driver') });
  assert.ok(old.ok);
  assert.equal(old.gpus[0].computeCapability, null);
  const banner = await queryGpusOnce({ nvidiaSmiPath: fake('banner') });
  assert.equal(!banner.ok && banner.kind, 'driver');
  const apps = await queryComputeAppsOnce({ nvidiaSmiPath: fake('h100') });
  assert.ok(apps.ok);
  assert.equal(apps.processes[0].pid, process.pid);
  const missing = await queryGpusOnce({ env: { PATH: path.join(tmp, 'nowhere') } });
  assert.equal(!missing.ok && missing.kind, 'notFound');
  const noExec = await queryGpusOnce({ nvidiaSmiPath: fake('not-executable') });
  assert.equal(!noExec.ok && noExec.kind, 'notExecutable');
});
