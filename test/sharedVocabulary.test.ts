// One spelling of byte counts and of how a process ended, whoever prints them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBytes } from '../src/shared/format';
import { describeExit } from '../src/shared/processExit';

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;

test('formatBytes: binary units, three significant digits, ? when unknown', () => {
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(4000), '3.91 KiB'); // 4000 / 1024 = 3.906
  assert.equal(formatBytes(44.6 * MIB), '44.6 MiB');
  assert.equal(formatBytes(512 * MIB), '512 MiB');
  assert.equal(formatBytes(7.5 * GIB), '7.50 GiB');
  assert.equal(formatBytes(null), '?');
  assert.equal(formatBytes(Number.NaN), '?');
});

test('describeExit: a signal wins over a code', () => {
  assert.equal(describeExit({ code: null, signal: 'SIGKILL' }), 'was killed by SIGKILL');
  assert.equal(describeExit({ code: 3, signal: null }), 'exited with code 3');
});
