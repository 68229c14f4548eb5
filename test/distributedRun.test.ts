// `model-lens run --nproc-per-node N` / `--torchrun`: real torch.distributed.run jobs (gloo on
// CPU, 127.0.0.1 only) under the real CLI, checked against the same script under plain torchrun.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import type { RankDiagnosis, RankProgress, TrainProgress } from '../src/protocol/messages';
import {
  DISTRIBUTED_STOP_WAIT_MS,
  formatRanksSummary,
  ranksText,
  splitShellWords,
  takeDistributedArgs,
  withRankPrefix,
} from '../src/cli/distributedRun';
import { cli, lineOf, processAlive, ROOT, startCli, waitUntil, type RunJson } from './cliProcess';

const DDP = path.join(ROOT, 'examples', 'ddp_train.py');
const ACCELERATE = path.join(ROOT, 'examples', 'ddp_accelerate.py');
const FSDP = path.join(ROOT, 'examples', 'fsdp_train.py');
const STEPS = 12;
/** The slowed rank's DataLoader sleeps this long per batch: ~10× a step of this model. */
const SLOW_MS = 30;
const FAIL_STEP = 5;
/** A plain torchrun job of the example: imports torch in three processes on a busy machine. */
const TORCHRUN_TIMEOUT_MS = 180_000;
const STOP_AFTER_STEP = 3;
/** Engine shutdown after the stop wait (the client's kill grace). */
const CLI_EXIT_SLACK_MS = 4_000;

/** Interpreters under test: one per torch version in CI (scripts/test.js), else the venvs here. */
const PYTHONS = (() => {
  const fromEnv = (process.env.MODEL_LENS_TEST_PYTHONS ?? '').split(path.delimiter).filter(Boolean);
  if (fromEnv.length) return fromEnv;
  return ['torch1', 'torch2']
    .map((v) => path.join(ROOT, '.cache', 'venvs', v, 'bin', 'python'))
    .filter((p) => fs.existsSync(p));
})();

function hasModule(python: string, mod: string): boolean {
  try {
    execFileSync(python, ['-c', `import ${mod}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

type DistJson = RunJson & {
  ranks?: RankProgress[];
  worldSize?: number | null;
  error?: RunJson['error'] & { rank?: number };
  diagnosis: (RunJson['diagnosis'] & { ranks?: RankDiagnosis[] }) | null;
};

/** `step N loss X` lines rank 0 of the examples prints, as [step, loss] pairs. */
function printedLosses(text: string): [number, number][] {
  return [...text.matchAll(/^(?:\[rank 0\] )?step (\d+) loss (\S+)$/gm)].map((m) => [
    Number(m[1]),
    Number(m[2]),
  ]);
}

/** The example under plain `python -m torch.distributed.run` (the module behind `torchrun`). */
function plainTorchrun(
  python: string,
  launcher: string[],
  script: string,
  args: string[],
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, ['-m', 'torch.distributed.run', ...launcher, script, ...args], {
      cwd: ROOT,
      env: { ...process.env, OMP_NUM_THREADS: '1', HF_HUB_OFFLINE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), TORCHRUN_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`plain torchrun exited ${code}:\n${err.slice(-3000)}`));
    });
  });
}

/**
 * torch 1.13's launcher cannot parse its default `--redirects 0` on Python 3.11; the engine
 * works around it (job.py), and so does the plain reference run: stdout is teed back, each line
 * prefixed with `[default0]:`.
 */
function plainLauncherFix(python: string): string[] {
  try {
    execFileSync(
      python,
      [
        '-c',
        'import sys; from torch.distributed.elastic.multiprocessing.api import Std; ' +
          'sys.exit(Std.from_str("0") is None)',
      ],
      { stdio: 'ignore' },
    );
    return [];
  } catch {
    return ['--redirects', '1', '--tee', '1'];
  }
}

function stripTee(text: string): string {
  return text.replace(/^\[default\d+\]:/gm, '');
}

const references = new Map<string, Promise<[number, number][]>>();

/** Rank 0's printed loss curve of the example under plain torchrun, 2 ranks, once per python. */
function referenceCurve(python: string): Promise<[number, number][]> {
  let r = references.get(python);
  if (!r) {
    r = freePort().then(async (port) => {
      const launcher = [
        '--nproc_per_node',
        '2',
        '--master_port',
        String(port),
        ...plainLauncherFix(python),
      ];
      return printedLosses(
        stripTee(await plainTorchrun(python, launcher, DDP, ['--steps', String(STEPS)])),
      );
    });
    references.set(python, r);
  }
  return r;
}

function parseDoc(stdout: string, stderr: string): DistJson {
  try {
    return JSON.parse(stdout) as DistJson;
  } catch {
    throw new Error(`no --json document on stdout:\n${stdout}\nstderr:\n${stderr.slice(-3000)}`);
  }
}

function rankPids(doc: DistJson): number[] {
  return (doc.diagnosis?.ranks ?? [])
    .map((r) => r.pid)
    .filter((p): p is number => typeof p === 'number');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

describe('model-lens run --nproc-per-node: arguments and text', () => {
  test('launcher options are taken out before the ordinary parser; script args stay', () => {
    const t = takeDistributedArgs([
      'train.py',
      '--nproc-per-node',
      '2',
      '--json',
      '--torchrun',
      '--nnodes 2 --rdzv-endpoint "127.0.0.1:29400"',
      '--',
      '--nproc-per-node',
      '9',
    ]);
    assert.deepEqual(t.argv, ['train.py', '--json', '--', '--nproc-per-node', '9']);
    assert.deepEqual(t.distributed, {
      nprocPerNode: 2,
      launcherArgs: ['--nnodes', '2', '--rdzv-endpoint', '127.0.0.1:29400'],
    });
    assert.deepEqual(takeDistributedArgs(['train.py', '--nproc-per-node=4']).distributed, {
      nprocPerNode: 4,
      launcherArgs: undefined,
    });
    assert.equal(takeDistributedArgs(['train.py', '--json']).distributed, undefined);
    assert.throws(
      () => takeDistributedArgs(['t.py', '--nproc-per-node', 'two']),
      /--nproc-per-node two: expected a whole number/,
    );
    assert.throws(() => takeDistributedArgs(['t.py', '--torchrun']), /--torchrun needs a value/);
    assert.deepEqual(splitShellWords(`--a 'b c' d\\ e "f\\"g"`), ['--a', 'b c', 'd e', 'f"g']);
    assert.throws(() => splitShellWords('--a "b'), /unclosed "/);
  });

  test('each printed line carries its rank, also across notifications that split a line', () => {
    const starts = new Map<number, boolean>();
    assert.equal(
      withRankPrefix({ stream: 'stdout', text: 'step 1 lo', rank: 1 }, starts),
      '[rank 1] step 1 lo',
    );
    assert.equal(
      withRankPrefix({ stream: 'stdout', text: 'ss 2.0\nnext\n', rank: 1 }, starts),
      'ss 2.0\n[rank 1] next\n',
    );
    assert.equal(withRankPrefix({ stream: 'stdout', text: 'plain\n' }, starts), 'plain\n');
  });

  test('the progress line names the ranks and the loss spread', () => {
    const p: TrainProgress = {
      runId: 'r1',
      state: 'running',
      step: 5,
      epoch: null,
      totalSteps: null,
      totalEpochs: null,
      stepsPerSec: null,
      etaSec: null,
      loss: [],
      ranks: [
        { rank: 0, state: 'running', step: 5, loss: 1.5 },
        { rank: 1, state: 'starting', step: 0, loss: null },
      ],
      worldSize: 2,
      lossSpread: { step: 4, min: 1.25, max: 1.5 },
    };
    assert.equal(ranksText(p), ' · 2 ranks (1 starting) · loss spread 0.2500');
  });

  test('the summary has one line per rank: step split and where it waited', () => {
    const d = {
      runId: 'r1',
      steps: 12,
      device: 'cpu',
      batchSize: 16,
      stepMs: 3,
      opsPerStep: null,
      avgOpUs: null,
      hostToDevice: { count: 0, bytes: 0 },
      deviceToHost: { count: 0, bytes: 0 },
      syncs: [],
      breakdown: null,
      findings: [],
      ranks: [
        {
          rank: 1,
          state: 'done' as const,
          steps: 12,
          stepMs: 32.5,
          host: 'node1',
          pid: 42,
          waitMsPerStep: 1.5,
          breakdown: {
            dataMs: 30,
            forwardMs: 0.5,
            backwardMs: 1.5,
            optimizerMs: 0.25,
            otherMs: 0.25,
          },
          collectives: [
            {
              op: 'all_reduce',
              count: 12,
              totalMs: 18,
              msPerStep: 1.5,
              source: { file: '/w/train.py', line: 57 },
            },
          ],
        },
      ],
    };
    assert.deepEqual(formatRanksSummary(d, undefined), [
      'Ranks: 1',
      '  rank 1 (node1, pid 42): done, 12 steps, 32.50 ms/step (data 30.00, forward 0.50, ' +
        'backward 1.50, optimizer 0.25, other 0.25); collectives 1.50 ms/step, most in ' +
        'all_reduce at train.py:57',
    ]);
    assert.deepEqual(
      formatRanksSummary({ ...d, ranks: undefined }, undefined),
      [],
      'nothing for a single-process run',
    );
  });

  test('a TF.js file cannot be run distributed: exit 2 before anything starts', async () => {
    const r = await cli(['run', 'examples/iris_train.ts', '--nproc-per-node', '2']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /iris_train\.ts: --nproc-per-node and --torchrun run PyTorch scripts \(\.py\) only/,
    );
  });
});

for (const python of PYTHONS) {
  const venv = path.basename(path.dirname(path.dirname(python)));
  describe(`model-lens run --nproc-per-node 2 (${venv})`, () => {
    test("2-rank DDP: plain torchrun's loss curve step for step; the slowed rank named", async () => {
      const args = ['--steps', String(STEPS)];
      const [reference, r] = await Promise.all([
        referenceCurve(python),
        cli([
          'run',
          DDP,
          '--nproc-per-node',
          '2',
          '--json',
          '--python',
          python,
          '--',
          ...args,
          '--slow-rank',
          '1',
          '--slow-ms',
          String(SLOW_MS),
        ]),
      ]);
      assert.equal(r.code, 0, r.stderr);
      const doc = parseDoc(r.stdout, r.stderr);
      assert.equal(reference.length, STEPS, `plain torchrun printed ${STEPS} losses`);
      // The engine's curve is rank 0's, read from the loss tensor backward() saw; the script
      // prints the same tensor's .item(). Exact equality: same seed, same ops, same values.
      assert.deepEqual(doc.loss, reference);
      assert.deepEqual(
        printedLosses(r.stderr),
        reference,
        'rank 0 printed the same under model-lens',
      );
      assert.equal(doc.state, 'done');
      assert.equal(doc.worldSize, 2);
      assert.deepEqual(
        doc.ranks?.map((x) => [x.rank, x.state, x.step]),
        [
          [0, 'done', STEPS],
          [1, 'done', STEPS],
        ],
      );

      const ranks = doc.diagnosis?.ranks ?? [];
      assert.equal(ranks.length, 2);
      const backwardLine = lineOf(DDP, 'loss.backward()');
      for (const rank of ranks) {
        const ar = rank.collectives.find((c) => c.op === 'all_reduce');
        assert.ok(
          ar,
          `rank ${rank.rank} timed DDP's all_reduce: ${JSON.stringify(rank.collectives)}`,
        );
        assert.equal(ar.source?.line, backwardLine, 'attributed to the backward() line');
        assert.ok(ar.count >= STEPS, `one or more all_reduce per step (${ar.count})`);
        const barrier = rank.collectives.find((c) => c.op === 'barrier');
        assert.equal(barrier?.count, 1, "the script's dist.barrier() is timed too");
      }
      // The sleep is in the slowed rank's DataLoader, so it is data time there.
      const [r0, r1] = ranks;
      assert.ok(
        r1.breakdown!.dataMs >= SLOW_MS * 0.9,
        `rank 1 data ${r1.breakdown!.dataMs} ms per step`,
      );
      assert.ok(
        r0.breakdown!.dataMs < SLOW_MS / 2,
        `rank 0 data ${r0.breakdown!.dataMs} ms per step`,
      );
      // ...and rank 0 spends it waiting in the all-reduce.
      assert.ok(r0.waitMsPerStep >= SLOW_MS * 0.5, `rank 0 waits ${r0.waitMsPerStep} ms per step`);
      const finding = doc.diagnosis!.findings.find((f) => /slower per step/.test(f.message));
      assert.ok(finding, `a straggler finding: ${JSON.stringify(doc.diagnosis!.findings)}`);
      assert.match(
        finding.message,
        new RegExp(
          '^rank 1 is \\d+% slower per step .*data [\\d.]+ ms more.*' +
            `rank 0 waits [\\d.]+ ms per step in all_reduce at ddp_train\\.py:${backwardLine}\\.$`,
        ),
      );
      assert.equal(finding.severity, 'warning');
    });
  });
}

describe('model-lens run --nproc-per-node: failure, stop, nodes, accelerate', () => {
  // Launches cost seconds each on a small machine: these run on one interpreter (the last).
  const python = PYTHONS[PYTHONS.length - 1];

  test('a rank that raises: exit 1 naming rank, file and line; the other stopped; none left', async () => {
    const failLine = lineOf(DDP, 'raise RuntimeError');
    const r = await cli([
      'run',
      DDP,
      '--nproc-per-node',
      '2',
      '--json',
      '--python',
      python,
      '--',
      '--steps',
      '1000',
      '--fail-rank',
      '1',
      '--fail-step',
      String(FAIL_STEP),
    ]);
    assert.equal(r.code, 1, r.stderr);
    const doc = parseDoc(r.stdout, r.stderr);
    assert.equal(doc.state, 'failed');
    assert.equal(doc.error?.rank, 1);
    assert.match(
      doc.error!.message,
      new RegExp(`^rank 1: RuntimeError: rank 1 gave up at step ${FAIL_STEP}`),
    );
    assert.equal(doc.error?.location?.line, failLine);
    assert.ok(r.stderr.includes(`ddp_train.py:${failLine}`), r.stderr);
    assert.deepEqual(
      doc.ranks?.map((x) => [x.rank, x.state]),
      [
        [0, 'stopped'],
        [1, 'failed'],
      ],
    );
    const pids = rankPids(doc);
    assert.equal(pids.length, 2);
    for (const pid of pids)
      assert.equal(processAlive(pid), false, `rank process ${pid} outlived the run`);
  });

  test('Ctrl-C stops every rank: exit 130, both ranks stopped, no rank process left', async () => {
    const p = startCli([
      'run',
      DDP,
      '--nproc-per-node',
      '2',
      '--json',
      '--python',
      python,
      '--',
      '--steps',
      '1000000',
      '--slow-rank',
      '1',
      '--slow-ms',
      '5',
    ]);
    await waitUntil(
      'rank 0 at step ' + STOP_AFTER_STEP,
      () => new RegExp(`^\\[rank 0\\] step ${STOP_AFTER_STEP} `, 'm').test(p.stderr()),
      TORCHRUN_TIMEOUT_MS,
    );
    const sentAt = Date.now();
    p.child.kill('SIGINT');
    const r = await p.done;
    assert.equal(r.code, 130, r.stderr);
    // Bounded: the ranks' clean stop, or the engine shut down (and the ranks with it) after it.
    assert.ok(
      Date.now() - sentAt <= DISTRIBUTED_STOP_WAIT_MS + CLI_EXIT_SLACK_MS,
      `exit took ${Date.now() - sentAt} ms`,
    );
    const doc = parseDoc(r.stdout, r.stderr);
    assert.equal(doc.state, 'stopped');
    assert.deepEqual(
      doc.ranks?.map((x) => [x.rank, x.state]),
      [
        [0, 'stopped'],
        [1, 'stopped'],
      ],
    );
    const pids = rankPids(doc);
    assert.equal(pids.length, 2);
    await waitUntil(
      'the ranks to exit',
      () => pids.every((pid) => !processAlive(pid)),
      5_000,
    ).catch(() => undefined);
    for (const pid of pids)
      assert.equal(processAlive(pid), false, `rank process ${pid} outlived the CLI`);
  });

  test("two nodes (--nnodes 2, c10d rendezvous on 127.0.0.1): each node's view, the 2-rank curve", async () => {
    const port = await freePort();
    const node = (n: number): string[] => [
      'run',
      DDP,
      '--nproc-per-node',
      '1',
      '--json',
      '--python',
      python,
      '--torchrun',
      `--nnodes 2 --node-rank ${n} --rdzv-backend c10d ` +
        `--rdzv-endpoint 127.0.0.1:${port} --rdzv-id ml-test`,
      '--',
      '--steps',
      String(STEPS),
    ];
    const [a, b, reference] = await Promise.all([
      cli(node(0)),
      cli(node(1)),
      referenceCurve(python),
    ]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const [da, db] = [parseDoc(a.stdout, a.stderr), parseDoc(b.stdout, b.stderr)];
    // Each launch aggregates its own node's ranks; the world is both.
    assert.equal(da.worldSize, 2);
    assert.equal(db.worldSize, 2);
    const rankOf = (d: DistJson) => d.diagnosis?.ranks?.map((x) => [x.rank, x.groupRank]);
    assert.deepEqual([rankOf(da), rankOf(db)].sort(), [[[0, 0]], [[1, 1]]]);
    const withRank0 = da.ranks?.[0].rank === 0 ? da : db;
    assert.deepEqual(withRank0.loss, reference);
  });

  test('accelerate (Accelerator, prepare, backward) in one process and in two', async () => {
    const withAccelerate = PYTHONS.filter((p) => hasModule(p, 'accelerate'));
    assert.ok(
      withAccelerate.length > 0,
      `accelerate is installed for one of ${PYTHONS.join(', ')} (scripts/setup-python.sh)`,
    );
    const py = withAccelerate[withAccelerate.length - 1];
    const env = { HF_HUB_OFFLINE: '1' };
    const [one, two] = await Promise.all([
      cli(['run', ACCELERATE, '--json', '--python', py, '--', '--steps', String(STEPS)], env),
      cli(
        [
          'run',
          ACCELERATE,
          '--nproc-per-node',
          '2',
          '--json',
          '--python',
          py,
          '--',
          '--steps',
          String(STEPS),
        ],
        env,
      ),
    ]);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(two.code, 0, two.stderr);
    const [d1, d2] = [parseDoc(one.stdout, one.stderr), parseDoc(two.stdout, two.stderr)];
    assert.equal(d1.steps, STEPS);
    assert.deepEqual(d1.loss, printedLosses(one.stderr), 'single process: the printed curve');
    assert.match(one.stderr, new RegExp(`done: ${STEPS} steps on 1 processes`));
    assert.deepEqual(
      d2.ranks?.map((x) => [x.rank, x.state, x.step]),
      [
        [0, 'done', STEPS],
        [1, 'done', STEPS],
      ],
    );
    assert.deepEqual(d2.loss, printedLosses(two.stderr), "two processes: rank 0's printed curve");
    assert.match(two.stderr, new RegExp(`done: ${STEPS} steps on 2 processes`));
    for (const rank of d2.diagnosis?.ranks ?? []) {
      assert.ok(
        rank.collectives.some((c) => c.op === 'all_reduce' && c.count >= STEPS),
        `rank ${rank.rank} all_reduce timed`,
      );
    }
  });

  test('FSDP on CPU (gloo): all_gather and reduce_scatter timed at forward and backward', async () => {
    // torch 1.13's FSDP does not import on Python 3.11 (a dataclass default it declares).
    const withFsdp = PYTHONS.filter((p) => hasModule(p, 'torch.distributed.fsdp'));
    assert.ok(withFsdp.length > 0, `FSDP imports with one of ${PYTHONS.join(', ')}`);
    const py = withFsdp[withFsdp.length - 1];
    const r = await cli([
      'run',
      FSDP,
      '--nproc-per-node',
      '2',
      '--json',
      '--python',
      py,
      '--',
      '--steps',
      String(STEPS),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const doc = parseDoc(r.stdout, r.stderr);
    assert.equal(doc.state, 'done');
    assert.deepEqual(doc.loss, printedLosses(r.stderr), "rank 0's printed curve");
    const forward = lineOf(FSDP, 'loss = loss_fn(model(x), y)');
    const backward = lineOf(FSDP, 'loss.backward()');
    for (const rank of doc.diagnosis?.ranks ?? []) {
      const at = (line: number) =>
        rank.collectives.filter((c) => c.source?.line === line).map((c) => c.op);
      assert.ok(
        at(forward).some((op) => /all_gather/.test(op)),
        `rank ${rank.rank} gathers in forward: ${JSON.stringify(rank.collectives)}`,
      );
      assert.ok(
        at(backward).some((op) => /reduce_scatter/.test(op)),
        `rank ${rank.rank} reduce-scatters in backward`,
      );
    }
  });
});
