// A small protocol fuzzer: random and mutated frames, headers and JSON against both real engines
// for a bounded time. After every input the engine must either answer a probe request or have
// exited with a message on stderr: never hang, never die silently. Seeded, so a failure replays
// with MODEL_LENS_FUZZ_SEED.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  frame,
  initializeFrame,
  killGroup,
  startRawEngine,
  waitFor,
  type EngineKind,
  type RawEngine,
} from './processes';

/** Fuzzing time per engine (starts and restarts included). */
const FUZZ_MS = 12_000;
/** Inputs sent back to back before a probe; the last of a round may break the framing. */
const ROUND_INPUTS = 25;
/** Share of rounds that end with a broken frame (each costs a restart, or a 10 s wait). */
const BREAKING_ROUND_SHARE = 0.3;
/** An engine may take this long to start (torch import on a loaded machine). */
const START_TIMEOUT_MS = 180_000;
/** Answer-or-exit limit per input: above the engines' 10 s partial-frame limit. */
const VERDICT_TIMEOUT_MS = 40_000;
const SEED = Number(process.env.MODEL_LENS_FUZZ_SEED ?? Date.now() % 1_000_000);

/** mulberry32: a tiny seeded PRNG, so a failing sequence can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Methods a client may send, minus shutdown (a clean exit is not what is tested here).
const METHODS = [
  'model/load',
  'model/tree',
  'model/summary',
  'model/forward',
  'tensor/inspect',
  'profile/run',
  'hook/attach',
  'hook/detach',
  'train/stop',
  'train/diagnose',
  'system/info',
  'engine/initialize',
  'no/such',
  '$/cancelRequest',
  '',
];

function fuzzer(rand: () => number) {
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
  const value = (depth: number): unknown => {
    const r = rand();
    if (depth > 2 || r < 0.3)
      return pick([
        0,
        -1,
        1.5,
        1e308,
        -0,
        'x',
        '',
        '../../etc/passwd',
        '/dev/zero',
        true,
        null,
        '\u0000\u202e',
      ]);
    if (r < 0.6) return Array.from({ length: Math.floor(rand() * 4) }, () => value(depth + 1));
    const o: Record<string, unknown> = {};
    for (const k of [
      'file',
      'modelId',
      'steps',
      'target',
      'kind',
      'path',
      'id',
      'inputShapes',
      'hookId',
      'runId',
    ].filter(() => rand() < 0.3)) {
      o[k] = value(depth + 1);
    }
    return o;
  };
  const message = (id: number): unknown => {
    const m: Record<string, unknown> = {
      jsonrpc: pick(['2.0', '2.0', '1.0', 2]),
      method: pick(METHODS),
      params: value(0),
    };
    const r = rand();
    if (r < 0.7) m.id = id;
    else if (r < 0.8) m.id = pick([null, 'str', [1], { a: 1 }, 1.5, true]);
    return m;
  };
  /** One input: well-framed JSON-RPC, well-framed junk, or (`breaking`) a broken frame or bytes. */
  return (id: number, breaking: boolean): Buffer => {
    const r = rand();
    if (!breaking && r < 0.8) return frame(message(id));
    if (!breaking) {
      // Well framed, not JSON (or not an object): answered with a parse error or an invalid request.
      const body = Buffer.from(
        pick(['{', '[]', '"x"', '{"jsonrpc":"2.0","id":', 'null', '\u00ff\u00fe', '1e999']),
        'utf8',
      );
      return Buffer.concat([Buffer.from(`Content-Length: ${body.length}\r\n\r\n`), body]);
    }
    const good = frame(message(id));
    const body = good.subarray(good.indexOf('\r\n\r\n') + 4);
    return pick([
      Buffer.concat([
        Buffer.from(`Content-Length: ${body.length + 1 + Math.floor(rand() * 50)}\r\n\r\n`),
        body,
      ]),
      Buffer.concat([
        Buffer.from(
          `Content-Length: ${Math.max(0, body.length - 1 - Math.floor(rand() * 5))}\r\n\r\n`,
        ),
        body,
      ]),
      Buffer.concat([Buffer.from('Content-Length: 12abc\r\n\r\n'), body]),
      Buffer.concat([Buffer.from('X-Nothing: 1\r\n\r\n'), body]),
      Buffer.from(
        Array.from({ length: 1 + Math.floor(rand() * 200) }, () => Math.floor(rand() * 256)),
      ),
      Buffer.concat([
        Buffer.from('content-length:   '),
        Buffer.from(String(body.length)),
        Buffer.from('\n\n'),
        body,
      ]),
    ]);
  };
}

function responses(engine: RawEngine): number {
  return engine.parser.messages.filter((m) => 'id' in m).length;
}

async function started(kind: EngineKind, nextId: () => number): Promise<RawEngine> {
  const engine = startRawEngine(kind);
  const id = nextId();
  engine.input.write(initializeFrame(id));
  await engine.response(id, START_TIMEOUT_MS);
  return engine;
}

/** Resolves with 'answered' or 'exited'; rejects when the engine neither answers nor exits. */
async function verdict(
  engine: RawEngine,
  probeId: number,
  round: string[],
): Promise<'answered' | 'exited'> {
  let exited = false;
  void engine.exited.then(() => (exited = true));
  engine.input.write(frame({ jsonrpc: '2.0', id: probeId, method: 'system/info' }));
  const what = (): string =>
    `an answer to probe ${probeId} or an exit (stderr: ${engine.stderr().slice(-800)}; inputs: ${JSON.stringify(round)})`;
  return waitFor(what(), VERDICT_TIMEOUT_MS, () =>
    engine.parser.messages.some((m) => m.id === probeId)
      ? 'answered'
      : exited
        ? 'exited'
        : undefined,
  );
}

for (const kind of ['pytorch', 'tfjs'] as EngineKind[]) {
  describe(`protocol fuzzer: ${kind} engine (seed ${SEED})`, () => {
    test(`random and mutated frames for ${FUZZ_MS / 1000} s: every input answered or a reported exit`, async () => {
      const rand = prng(SEED + (kind === 'tfjs' ? 1 : 0));
      const input = fuzzer(rand);
      let id = 1000;
      const nextId = (): number => ++id;
      let engine = await started(kind, nextId);
      const stats = { inputs: 0, answered: 0, exits: 0, responses: 0 };
      /** This round's inputs, shown when it fails. */
      const round: string[] = [];
      const deadline = Date.now() + FUZZ_MS;
      try {
        while (Date.now() < deadline) {
          const breaking = rand() < BREAKING_ROUND_SHARE;
          round.length = 0;
          for (let i = 0; i < ROUND_INPUTS; i++) {
            const bytes = input(nextId(), breaking && i === ROUND_INPUTS - 1);
            round.push(bytes.toString('latin1'));
            engine.input.write(bytes);
            stats.inputs++;
          }
          const v = await verdict(engine, nextId(), round);
          if (v === 'answered') {
            stats.answered++; // rounds whose probe was answered
            assert.equal(
              engine.parser.corrupt,
              undefined,
              'the engine only writes well-formed frames',
            );
            continue;
          }
          stats.exits++;
          const exit = await engine.exited;
          assert.notEqual(
            exit.code,
            0,
            `an engine the fuzzer ends fails: ${JSON.stringify(exit)} ${engine.stderr().slice(-1500)} ${JSON.stringify(round)}`,
          );
          assert.match(
            engine.stderr(),
            /model-lens engine: protocol desync: /,
            `${kind} exited ${JSON.stringify(exit)} and said why`,
          );
          killGroup(engine.child.pid);
          stats.responses += responses(engine);
          if (Date.now() < deadline) engine = await started(kind, nextId);
        }
      } finally {
        engine.input.end();
        killGroup(engine.child.pid);
      }
      stats.responses += responses(engine);
      console.log(`${kind}: ${JSON.stringify(stats)} (seed ${SEED})`);
      assert.ok(stats.inputs > 0);
    });
  });
}
