#!/usr/bin/env node
// `npm run lint` (and the typecheck stage of `npm test`): Prettier and typescript-eslint over
// TypeScript, ruff over Python, mypy over the Python protocol module. Each tool checks the paths
// listed below, not the whole tree yet: the tree has not been formatted once, and that one
// reformat is a single commit of its own (`npm run format`), after which these lists become ['.'].
//
//   node scripts/lint.js          check
//   node scripts/lint.js --fix    rewrite the listed files (prettier --write, eslint --fix, ruff format)
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');

/** TypeScript and JavaScript checked by Prettier and ESLint. Widen to ['.'] after the reformat. */
const TS_PATHS = [
  'src/protocol/defaults.ts',
  'src/protocol/errors.ts',
  'src/protocol/types.ts',
  'src/shared',
  'src/client/processGroup.ts',
  'src/client/runRecord.ts',
  'src/cli/cliArgs.ts',
  'test/conformance.test.ts',
  'test/engines.ts',
  'test/protocolDrift.test.ts',
  'test/sharedVocabulary.test.ts',
  'scripts/genPythonProtocol.ts',
  'scripts/lint.js',
  'scripts/test.js',
  'eslint.config.mjs',
];
/** Python checked by `ruff check` and `ruff format --check`. Widen to ['python'] after the reformat. */
const PY_PATHS = [
  'python/model_lens_engine/protocol.py',
  'python/model_lens_engine/protocol_types.py',
  'python/tests/test_protocol.py',
];
/** Python type-checked by mypy --strict. */
const MYPY_STRICT_PATHS = [
  'python/model_lens_engine/protocol.py',
  'python/model_lens_engine/protocol_types.py',
];
/**
 * The whole engine under plain mypy (annotations where there are some, obvious errors
 * everywhere), torch and torchvision not analysed, less the modules that still fail (their
 * feature-detection fallbacks assign None to a class). Shrink the list as they get clean.
 */
const MYPY_PATHS = ['python/model_lens_engine'];
const MYPY_NOT_YET = [
  'python/model_lens_engine/flops.py',
  'python/model_lens_engine/profiling.py',
  'python/model_lens_engine/tensors.py',
  'python/model_lens_engine/training/instrument.py',
];

/**
 * ruff and mypy are pinned in scripts/setup-python.sh and installed into the torch2 venv (they
 * are dev tools from PyPI, like the test oracles); MODEL_LENS_LINT_PYTHON overrides.
 */
const LINT_PYTHON =
  process.env.MODEL_LENS_LINT_PYTHON ??
  path.join(ROOT, '.cache', 'venvs', 'torch2', 'bin', 'python');

const fix = process.argv.includes('--fix');
let failed = 0;

function nodeBin(pkg, bin) {
  try {
    return path.join(path.dirname(require.resolve(`${pkg}/package.json`, { paths: [ROOT] })), bin);
  } catch {
    return null;
  }
}

function run(title, cmd, args) {
  console.log(`--- ${title}: ${path.relative(ROOT, cmd) || cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) {
    failed += 1;
    console.log(`--- ${title}: FAILED (exit ${r.status ?? r.signal ?? r.error?.message})`);
  }
}

const prettier = nodeBin('prettier', 'bin/prettier.cjs');
const eslint = nodeBin('eslint', 'bin/eslint.js');
for (const [name, bin] of [
  ['prettier', prettier],
  ['eslint', eslint],
]) {
  if (!bin) {
    console.log(`--- ${name} is not installed: run npm ci (it is a pinned devDependency)`);
    failed += 1;
  }
}
if (prettier)
  run('prettier', process.execPath, [prettier, fix ? '--write' : '--check', ...TS_PATHS]);
if (eslint) run('eslint', process.execPath, [eslint, ...(fix ? ['--fix'] : []), ...TS_PATHS]);

if (!fs.existsSync(LINT_PYTHON)) {
  console.log(`--- no ${LINT_PYTHON}: run scripts/setup-python.sh (it installs ruff and mypy)`);
  failed += 1;
} else {
  // Caches under .cache/ (ignored by git) rather than in the repository root.
  const ruff = ['-m', 'ruff'];
  const ruffCache = ['--cache-dir', path.join('.cache', 'ruff')];
  const mypy = ['-m', 'mypy', '--cache-dir', path.join('.cache', 'mypy')];
  const fixArgs = fix ? ['--fix'] : [];
  run('ruff check', LINT_PYTHON, [...ruff, 'check', ...ruffCache, ...fixArgs, ...PY_PATHS]);
  const formatArgs = fix ? [] : ['--check'];
  run('ruff format', LINT_PYTHON, [...ruff, 'format', ...ruffCache, ...formatArgs, ...PY_PATHS]);
  run('mypy --strict', LINT_PYTHON, [...mypy, '--strict', ...MYPY_STRICT_PATHS]);
  const notYet = MYPY_NOT_YET.flatMap((p) => ['--exclude', `^${p.replace(/\./g, '\\.')}$`]);
  const skipTorch = ['--follow-imports=skip', '--ignore-missing-imports'];
  run('mypy', LINT_PYTHON, [...mypy, ...skipTorch, ...notYet, ...MYPY_PATHS]);
}

process.exit(failed ? 1 : 0);
