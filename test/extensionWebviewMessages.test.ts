// What a webview may ask of the extension: only the listed shapes, per panel, nothing else.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_MESSAGE_STRING_CHARS, validateWebviewMessage } from '../src/extension/webviewMessages';

describe('webview message validation', () => {
  it('accepts the messages each panel sends', () => {
    assert.equal(validateWebviewMessage('summary', { type: 'ready' }).ok, true);
    assert.equal(validateWebviewMessage('summary', { type: 'copySummary' }).ok, true);
    assert.equal(
      validateWebviewMessage('summary', { type: 'revealModule', path: 'features.3' }).ok,
      true,
    );
    assert.equal(validateWebviewMessage('ops', { type: 'openOpSource', index: 0 }).ok, true);
    assert.equal(validateWebviewMessage('hooks', { type: 'detachHook', hookId: 'h1' }).ok, true);
    assert.equal(validateWebviewMessage('tensor', { type: 'restartEngine' }).ok, true);
  });

  it('rejects a message meant for another panel', () => {
    assert.equal(validateWebviewMessage('tensor', { type: 'copySummary' }).ok, false);
    assert.equal(validateWebviewMessage('summary', { type: 'exportTrace' }).ok, false);
    assert.equal(validateWebviewMessage('ops', { type: 'detachHook', hookId: 'h1' }).ok, false);
  });

  it('rejects unknown types, including names inherited from Object.prototype', () => {
    for (const type of ['runCommand', 'toString', '__proto__', 'constructor', '', 42, null]) {
      assert.equal(validateWebviewMessage('summary', { type }).ok, false, String(type));
    }
  });

  it('rejects non-objects, extra fields and wrongly typed fields', () => {
    for (const raw of [
      null,
      undefined,
      'ready',
      3,
      ['ready'],
      { type: 'ready', command: 'rm -rf /' },
    ]) {
      assert.equal(validateWebviewMessage('summary', raw).ok, false, JSON.stringify(raw));
    }
    assert.equal(validateWebviewMessage('summary', { type: 'revealModule' }).ok, false);
    assert.equal(validateWebviewMessage('summary', { type: 'revealModule', path: 3 }).ok, false);
    assert.equal(validateWebviewMessage('ops', { type: 'openOpSource', index: -1 }).ok, false);
    assert.equal(validateWebviewMessage('ops', { type: 'openOpSource', index: 1.5 }).ok, false);
    assert.equal(validateWebviewMessage('ops', { type: 'openOpSource', index: '0' }).ok, false);
  });

  it('rejects strings longer than the limit and says why', () => {
    const long = 'a'.repeat(MAX_MESSAGE_STRING_CHARS + 1);
    const v = validateWebviewMessage('summary', { type: 'revealModule', path: long });
    assert.equal(v.ok, false);
    assert.match(v.ok ? '' : v.reason, /at most 4096 characters/);
  });

  it('holds the Training and System pages to the same validator as the others', () => {
    // Training may stop its run and open one of the run's own locations, by index only.
    assert.equal(validateWebviewMessage('training', { type: 'stopTraining' }).ok, true);
    assert.equal(validateWebviewMessage('training', { type: 'openOpSource', index: 2 }).ok, true);
    assert.equal(
      validateWebviewMessage('training', { type: 'openOpSource', index: 2, file: '/etc/passwd' })
        .ok,
      false,
    );
    assert.equal(validateWebviewMessage('training', { type: 'exportTrace' }).ok, false);
    assert.equal(validateWebviewMessage('ops', { type: 'stopTraining' }).ok, false);
    // System only ever says ready.
    assert.equal(validateWebviewMessage('system', { type: 'ready' }).ok, true);
    for (const type of ['showLog', 'restartEngine', 'stopTraining', 'revealModule']) {
      assert.equal(validateWebviewMessage('system', { type, path: '' }).ok, false, type);
    }
  });
});
