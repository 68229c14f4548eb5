import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';

/**
 * The page every Model Lens panel loads: a strict Content-Security-Policy (nothing remote, only
 * our stylesheet and one nonce'd script from dist/webview), theme-aware CSS, and the bundle
 * `dist/webview/<panel>Panel.js` that renders into #app.
 */
export function webviewHtml(
  webview: vscode.Webview,
  extensionUri: vscode.Uri,
  panel: string,
  title: string,
): string {
  const nonce = randomBytes(16).toString('base64');
  const css = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'media', 'webview.css'));
  // uPlot's own stylesheet (copied by esbuild.js), before ours so the theme rules win.
  const chartCss = webview.asWebviewUri(
    vscode.Uri.joinPath(extensionUri, 'dist', 'webview', 'uPlot.min.css'),
  );
  const script = webview.asWebviewUri(
    vscode.Uri.joinPath(extensionUri, 'dist', 'webview', `${panel}Panel.js`),
  );
  const csp = [
    "default-src 'none'",
    `style-src ${webview.cspSource}`,
    `img-src ${webview.cspSource} data:`,
    `font-src ${webview.cspSource}`,
    `script-src 'nonce-${nonce}'`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${chartCss.toString()}">
<link rel="stylesheet" href="${css.toString()}">
<title>${title}</title>
</head>
<body data-panel="${panel}">
<div id="banner" role="alert" hidden></div>
<main id="app"><p class="muted">Loading…</p></main>
<script nonce="${nonce}" src="${script.toString()}"></script>
</body>
</html>`;
}
