// A small page object over the VS Code workbench served by code-server, driven by Playwright and
// Debian's Chromium. Every wait is bounded; a step that fails saves a screenshot and says which
// step and what it was waiting for.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import type { Browser, Frame, Locator, Page } from 'playwright-core';
import { REPO_ROOT, RUN_MARKER_ENV } from './codeServer';

export const CHROMIUM_PATH = process.env.MODEL_LENS_CHROMIUM ?? '/usr/bin/chromium';
export const SCREENSHOT_DIR = path.join(REPO_ROOT, 'test-output', 'e2e');
export const WORKBENCH_READY_TIMEOUT_MS = 60_000;
export const STEP_TIMEOUT_MS = 30_000;
const UI_TIMEOUT_MS = 15_000;
const POLL_MS = 100;
/** How long one palette query may take to list a command before it is typed again. */
const PALETTE_REQUERY_MS = 1_000;
const VIEWPORT = { width: 1440, height: 900 };

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

export async function launchBrowser(runId: string): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `no Chromium at ${CHROMIUM_PATH}: run scripts/e2e/setup.sh (or set MODEL_LENS_CHROMIUM)`,
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: UI_TIMEOUT_MS,
    // The marker lets the code-server cleanup find a browser that outlived its Playwright driver.
    env: { ...process.env, [RUN_MARKER_ENV]: runId },
  });
}

/** Rejects with `what` when `promise` takes longer than `ms`, so that no step can hang a run. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export class Workbench {
  private shot = 0;
  readonly consoleErrors: string[] = [];

  constructor(
    readonly page: Page,
    /** Prefix for screenshot names, e.g. `tfjs` → `test-output/e2e/tfjs-01-inspect.png`. */
    private readonly prefix: string,
  ) {
    page.setDefaultTimeout(UI_TIMEOUT_MS);
    page.on('console', (m) => {
      if (m.type() === 'error') this.consoleErrors.push(m.text());
    });
    fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  }

  static async open(browser: Browser, url: string, prefix: string): Promise<Workbench> {
    // Screenshots of an earlier run of this scenario (a stale ...-FAILED.png above all) must not
    // sit next to this run's.
    fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
    for (const f of fs.readdirSync(SCREENSHOT_DIR)) {
      if (f.startsWith(`${prefix}-`) && f.endsWith('.png'))
        fs.rmSync(path.join(SCREENSHOT_DIR, f), { force: true });
    }
    const page = await browser.newPage({ viewport: VIEWPORT });
    const wb = new Workbench(page, prefix);
    await wb.step(
      'workbench',
      async () => {
        await page.goto(url, { timeout: WORKBENCH_READY_TIMEOUT_MS });
        await page.locator('.monaco-workbench').waitFor({ timeout: WORKBENCH_READY_TIMEOUT_MS });
        await page.locator('.statusbar').waitFor({ timeout: WORKBENCH_READY_TIMEOUT_MS });
      },
      WORKBENCH_READY_TIMEOUT_MS,
    );
    return wb;
  }

  /**
   * Runs one scenario step with a deadline, then saves `NN-name.png`. On failure the screenshot is
   * `NN-name-FAILED.png` and the error names the step.
   */
  async step<T>(name: string, fn: () => Promise<T>, timeoutMs = STEP_TIMEOUT_MS): Promise<T> {
    const n = String(++this.shot).padStart(2, '0');
    try {
      const result = await withTimeout(fn(), timeoutMs, `step "${name}"`);
      await this.screenshot(`${n}-${name}`);
      return result;
    } catch (err) {
      const file = await this.screenshot(`${n}-${name}-FAILED`).catch(() => '(screenshot failed)');
      const msg = err instanceof Error ? err.message : String(err);
      throw new Error(`e2e step "${name}" failed: ${msg.split('\n')[0]}\nscreenshot: ${file}`, {
        cause: err,
      });
    }
  }

  async screenshot(name: string): Promise<string> {
    const file = path.join(SCREENSHOT_DIR, `${this.prefix}-${name}.png`);
    await this.page.screenshot({ path: file, timeout: UI_TIMEOUT_MS });
    return file;
  }

  /** Runs a command palette entry by its full title, e.g. `Model Lens: Show Summary`. */
  async runCommand(title: string): Promise<void> {
    const input = this.page.locator('.quick-input-widget input');
    await this.page.keyboard.press('Escape');
    await this.page.keyboard.press('F1');
    await input.waitFor({ state: 'visible' });
    // Rows carry the title in their aria-label, sometimes followed by a keybinding or a detail.
    const row = this.page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first();
    // The palette lists the commands registered when the query last changed. Commands that come
    // from extension contributions (View: Show <container>, our own) are registered once the
    // extension host has read them, which can be after the workbench looks ready — especially
    // behind the Workspace Trust dialog — so a query typed too early matched nothing and never
    // did (the e2e failure "the palette never listed 'View: Show Model Lens'"). Re-typing the
    // query asks again; the deadline stays UI_TIMEOUT_MS.
    await this.waitFor(
      `the palette to list "${title}"`,
      async () => {
        await input.fill(`>${title}`);
        return row.waitFor({ state: 'visible', timeout: PALETTE_REQUERY_MS }).then(
          () => true,
          () => false,
        );
      },
      (listed) => listed,
    );
    await row.click();
    await this.page
      .locator('.quick-input-widget')
      .waitFor({ state: 'hidden' })
      .catch(() => undefined);
  }

  /** Answers an open quick pick (input box or list) with `text`, or picks the row that has it. */
  async answerQuickInput(text: string, pickRow = true): Promise<void> {
    const input = this.page.locator('.quick-input-widget input');
    await input.waitFor({ state: 'visible' });
    await input.fill(text);
    if (pickRow) {
      const row = this.page
        .locator('.quick-input-list .monaco-list-row', { hasText: text })
        .first();
      await row.waitFor({ state: 'visible' });
      await row.click();
    } else {
      await this.page.keyboard.press('Enter');
    }
  }

  /** Opens a file of the workspace through Quick Open. */
  async openFile(relativePath: string): Promise<void> {
    await this.page.keyboard.press('Escape');
    await this.page.keyboard.press('Control+P');
    const input = this.page.locator('.quick-input-widget input');
    await input.waitFor({ state: 'visible' });
    await input.fill(relativePath);
    const base = path.basename(relativePath);
    await this.page
      .locator('.quick-input-list .monaco-list-row', { hasText: base })
      .first()
      .waitFor({ state: 'visible' });
    await this.page.keyboard.press('Enter');
    await this.page
      .locator(`.tabs-container .tab[data-resource-name="${base}"]`)
      .waitFor({ state: 'visible' });
    // The editor must have focus and content before commands that read "the current file" run.
    await this.page.locator('.editor-instance .view-lines').first().waitFor({ state: 'visible' });
  }

  /** Shows an activity bar container, e.g. `Model Lens`. */
  async showContainer(label: string): Promise<void> {
    // The activity bar entry appears once the extension's contributions are registered: the
    // palette cannot list "View: Show <container>" before that.
    await this.page
      .locator(`.activitybar [aria-label^="${label}"]`)
      .first()
      .waitFor({ state: 'attached' });
    // "View: Show <container>" opens the container whatever state the side bar is in; clicking
    // its activity bar entry toggles instead, and closes a container that is already shown.
    await this.runCommand(`View: Show ${label}`);
    // The side bar's title names the container once it is shown.
    await this.page
      .locator('.part.sidebar .composite.title')
      .filter({ hasText: new RegExp(label, 'i') })
      .first()
      .waitFor({ state: 'visible' });
  }

  /** A view pane (section of a side bar container) by its title, e.g. `Modules`. */
  pane(title: string): Locator {
    return this.page.locator('.pane', {
      has: this.page.locator(`.pane-header[aria-label^="${title}"]`),
    });
  }

  /** A view's tree by the view's name, e.g. `Modules`. */
  tree(viewName: string): Locator {
    return this.page.getByRole('tree', { name: viewName, exact: true });
  }

  /** A tree row by its aria-label, within one view's tree when `viewName` is given. */
  treeRow(ariaLabel: string, viewName?: string): Locator {
    const scope = viewName ? this.tree(viewName) : this.page.locator('body');
    return scope.locator(`.monaco-list-row[aria-label="${ariaLabel}"]`);
  }

  /** Tree rows whose aria-label starts with `prefix`, in screen order. */
  async treeRowLabels(prefix: string, within?: Locator): Promise<string[]> {
    const scope = within ?? this.page.locator('body');
    const rows = scope.locator(`.monaco-list-row[aria-label^="${prefix}"]`);
    const labels: string[] = [];
    for (const row of await rows.all()) {
      const label = await row.getAttribute('aria-label');
      if (label !== null) labels.push(label);
    }
    return labels;
  }

  /** Right-clicks a tree row and picks a context menu item by its label. */
  async contextMenu(row: Locator, item: string): Promise<void> {
    await row.scrollIntoViewIfNeeded();
    await row.click({ button: 'right' });
    // VS Code renders menus in a shadow root; Playwright's CSS engine pierces open shadow roots.
    const entry = this.page
      .locator('.monaco-menu .action-item .action-label', { hasText: item })
      .first();
    await entry.waitFor({ state: 'visible' });
    // A click right after the menu opens can be taken for the release of the right button and
    // ignored; hovering focuses the item and Enter runs it, which is what a keyboard user does.
    await entry.hover();
    await this.page.keyboard.press('Enter');
    await this.page.locator('.monaco-menu').first().waitFor({ state: 'hidden' });
  }

  /**
   * The webview frame whose document contains `selector`. A webview's content sits two iframes
   * deep and several webviews may be alive at once, so the frames are searched until one matches.
   */
  async webviewFrameWith(selector: string, timeoutMs = UI_TIMEOUT_MS): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const frame of this.page.frames()) {
        if (frame === this.page.mainFrame() || frame.isDetached()) continue;
        const count = await frame
          .locator(selector)
          .count()
          .catch(() => 0);
        if (count > 0) return frame;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    throw new Error(`no webview shows ${selector} within ${timeoutMs} ms`);
  }

  /** Text of the first visible status bar item that contains `needle`, or null. */
  async statusBarText(needle: string): Promise<string | null> {
    // Expired entries (setStatusBarMessage) can linger in the DOM, hidden.
    const item = this.page.locator('.statusbar-item:visible', { hasText: needle }).first();
    if ((await item.count()) === 0) return null;
    return (await item.innerText()).trim();
  }

  /** Texts of visible notification toasts (errors included). */
  async notifications(): Promise<string[]> {
    return this.page
      .locator('.notifications-toasts .notification-list-item-message')
      .allInnerTexts();
  }

  /** Polls `read` until `accept` says yes; fails naming the last value seen. */
  async waitFor<T>(
    what: string,
    read: () => Promise<T>,
    accept: (v: T) => boolean,
    timeoutMs = UI_TIMEOUT_MS,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last: T | undefined;
    let lastErr: unknown;
    while (Date.now() < deadline) {
      try {
        last = await read();
        if (accept(last)) return last;
      } catch (err) {
        lastErr = err;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    const seen = last === undefined ? `error ${String(lastErr)}` : JSON.stringify(last);
    throw new Error(`waited ${timeoutMs} ms for ${what}; last seen: ${seen}`);
  }
}
