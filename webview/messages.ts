// Browser-side mirror of src/extension/webviewMessages.ts and src/extension/panels.ts HostMessage
// (the webview and extension projects cannot share files). The extension validates every
// message it receives against its own copy, so a drift here fails safe: the message is ignored.

export type WebviewMessage =
  | { type: 'ready' }
  | { type: 'restartEngine' }
  | { type: 'showLog' }
  | { type: 'copySummary' }
  | { type: 'revealModule'; path: string }
  | { type: 'exportTrace' }
  | { type: 'openOpSource'; index: number }
  | { type: 'detachHook'; hookId: string };

export type HostMessage =
  | { type: 'state'; state: unknown }
  | { type: 'patch'; state: unknown }
  | { type: 'engine'; crashed: boolean; message?: string };
