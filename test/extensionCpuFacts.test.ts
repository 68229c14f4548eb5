// The System panel's CPU facts without systeminformation (src/extension/cpuFacts.ts).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { test } from 'node:test';
import { collectCpuFacts, parseProcCpuinfo } from '../src/extension/cpuFacts';

/** Two sockets × one core × two threads, trimmed from a real x86 /proc/cpuinfo. */
const TWO_SOCKETS = [0, 1, 2, 3]
  .map(
    (i) =>
      `processor\t: ${i}\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\ncpu MHz\t\t: 2199.998\nphysical id\t: ${i >> 1}\ncore id\t\t: 0\n`,
  )
  .join('\n');

test('counts physical cores as distinct (physical id, core id) pairs', () => {
  assert.deepEqual(parseProcCpuinfo(TWO_SOCKETS), {
    model: 'Intel(R) Xeon(R) CPU @ 2.20GHz',
    physicalCores: 2,
    logicalCores: 4,
    mhz: 2200,
  });
});

test('an arm64 /proc/cpuinfo without core ids or a model name gives no physical count', () => {
  const arm =
    'processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n\nprocessor\t: 1\nBogoMIPS\t: 50.00\n';
  assert.deepEqual(parseProcCpuinfo(arm), {
    model: null,
    physicalCores: null,
    logicalCores: 2,
    mhz: null,
  });
});

test(
  'on Linux the facts agree with lscpu (util-linux) and node',
  { skip: process.platform !== 'linux' },
  async () => {
    const facts = await collectCpuFacts();
    assert.equal(facts.logicalCores, os.cpus().length);
    const pairs = new Set(
      execFileSync('lscpu', ['-p=core,socket'], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l && !l.startsWith('#')),
    );
    if (parseProcCpuinfo(fs.readFileSync('/proc/cpuinfo', 'utf8')).physicalCores !== null)
      assert.equal(facts.physicalCores, pairs.size);
    assert.equal(facts.arch, os.arch());
  },
);
