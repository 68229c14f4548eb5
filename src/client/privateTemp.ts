// Files the extension writes for itself (Chrome traces) go to a folder only this user can enter,
// made once per process with a random name (mkdtemp, mode 0700): a predictable name in the shared
// temp folder could be pre-created by someone else as a symlink and written through.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

let folder: string | undefined;

/** `name` inside this process's private temp folder (created on first use). */
export function privateTempFile(name: string): string {
  if (!folder || !fs.existsSync(folder)) {
    folder = fs.mkdtempSync(path.join(os.tmpdir(), 'model-lens-'));
    fs.chmodSync(folder, 0o700);
  }
  return path.join(folder, path.basename(name));
}
