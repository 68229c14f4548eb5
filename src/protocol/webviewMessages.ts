// Messages between the extension and its webview panels. Both sides import these types; the
// extension still validates every message a webview sends (src/extension/webviewMessages.ts),
// because a webview renders text that came from user code.

/** What a webview may ask of the extension. None carries a command, a file path or code. */
export type WebviewMessage =
  | { type: 'ready' }
  | { type: 'restartEngine' }
  | { type: 'showLog' }
  | { type: 'copySummary' }
  | { type: 'revealModule'; path: string }
  | { type: 'exportTrace' }
  | { type: 'openOpSource'; index: number }
  | { type: 'detachHook'; hookId: string };

/** What the extension posts to a webview: a whole state, a patch of it, or the engine's health. */
export type HostMessage =
  | { type: 'state'; state: unknown }
  | { type: 'patch'; state: unknown }
  | { type: 'engine'; crashed: boolean; message?: string };
