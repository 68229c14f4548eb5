// The webview's side of the conversation with the extension: one `ready`, then state updates.
import { h } from './dom';
import type { HostMessage, WebviewMessage } from '../src/protocol/webviewMessages';

interface VsCodeApi {
  postMessage(message: unknown): void;
  getState(): unknown;
  setState(state: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

const api = acquireVsCodeApi();

export function post(message: WebviewMessage): void {
  api.postMessage(message);
}

export function savedState<T>(): Partial<T> {
  return (api.getState() as Partial<T> | undefined) ?? {};
}

export function saveState(state: unknown): void {
  api.setState(state);
}

export interface PanelRenderer<S, P = never> {
  /** Full data; null before anything was loaded. */
  render(state: S | null): void;
  /** Part of the data (the Hooks panel's changed hooks). */
  patch?(patch: P): void;
}

/** Wires a panel: host messages to the renderer, the engine-crash banner, then says `ready`. */
export function startPanel<S, P = never>(renderer: PanelRenderer<S, P>): void {
  window.addEventListener('message', (event: MessageEvent) => {
    const msg = event.data as HostMessage | undefined;
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'state') renderer.render(msg.state as S | null);
    else if (msg.type === 'patch') renderer.patch?.(msg.state as P);
    else if (msg.type === 'engine') showBanner(msg.crashed, msg.message);
  });
  post({ type: 'ready' });
}

function showBanner(crashed: boolean, message: string | undefined): void {
  const banner = document.getElementById('banner');
  if (!banner) return;
  banner.hidden = !crashed;
  banner.replaceChildren();
  if (!crashed) return;
  banner.append(
    h('span', null, message ?? 'The engine stopped.'),
    h(
      'button',
      { type: 'button', class: 'primary', onclick: () => post({ type: 'restartEngine' }) },
      'Restart Engine',
    ),
    h('button', { type: 'button', onclick: () => post({ type: 'showLog' }) }, 'Show Log'),
  );
}

export function app(): HTMLElement {
  return document.getElementById('app') as HTMLElement;
}
