// Messages webviews may send to the extension, and their validation. A webview renders data
// that came from user code (module names, op names, printed text), so the host treats what it
// sends back as untrusted: only these shapes are acted on, and none of them carries a command,
// a file path or text to execute; paths and indices are looked up in the host's own state.
// No `vscode` import here: unit tests run this without an editor.
import type { PanelKind, WebviewMessage } from '../protocol/webviewMessages';

export type { PanelKind };

type Field = 'string' | 'index';
const SPECS: Record<
  WebviewMessage['type'],
  { panels: PanelKind[] | 'all'; fields: Record<string, Field> }
> = {
  ready: { panels: 'all', fields: {} },
  restartEngine: { panels: ['summary', 'tensor', 'ops', 'hooks'], fields: {} },
  showLog: { panels: ['summary', 'tensor', 'ops', 'hooks', 'training'], fields: {} },
  copySummary: { panels: ['summary'], fields: {} },
  revealModule: { panels: ['summary', 'ops', 'hooks'], fields: { path: 'string' } },
  exportTrace: { panels: ['ops'], fields: {} },
  // An index into the host's own list of locations (the profile's ops, the run's sources).
  openOpSource: { panels: ['ops', 'training'], fields: { index: 'index' } },
  stopTraining: { panels: ['training'], fields: {} },
  detachHook: { panels: ['hooks'], fields: { hookId: 'string' } },
};

/** Module paths of real models are short; anything longer is not one of ours. */
export const MAX_MESSAGE_STRING_CHARS = 4_096;
const MAX_INDEX = 1_000_000;

export type Validation = { ok: true; message: WebviewMessage } | { ok: false; reason: string };

export function validateWebviewMessage(panel: PanelKind, raw: unknown): Validation {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    return { ok: false, reason: 'not an object' };
  const obj = raw as Record<string, unknown>;
  const type = obj.type;
  if (typeof type !== 'string' || !Object.prototype.hasOwnProperty.call(SPECS, type)) {
    return { ok: false, reason: `unknown type ${JSON.stringify(type)?.slice(0, 80)}` };
  }
  const spec = SPECS[type as WebviewMessage['type']];
  if (spec.panels !== 'all' && !spec.panels.includes(panel))
    return { ok: false, reason: `${type} is not a ${panel} panel message` };
  for (const key of Object.keys(obj)) {
    if (key !== 'type' && !(key in spec.fields))
      return { ok: false, reason: `unexpected field ${key.slice(0, 80)}` };
  }
  for (const [key, kind] of Object.entries(spec.fields)) {
    const v = obj[key];
    if (kind === 'string' && (typeof v !== 'string' || v.length > MAX_MESSAGE_STRING_CHARS)) {
      return {
        ok: false,
        reason: `${key} must be a string of at most ${MAX_MESSAGE_STRING_CHARS} characters`,
      };
    }
    if (
      kind === 'index' &&
      !(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_INDEX)
    ) {
      return { ok: false, reason: `${key} must be a non-negative integer` };
    }
  }
  return { ok: true, message: obj as unknown as WebviewMessage };
}
