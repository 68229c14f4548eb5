// torch's own view of CUDA next to nvidia-smi's. The two disagree in a few well-known ways, and
// each has one fix: a CPU-only wheel on a GPU machine (the most common reason "my GPU is not
// used"), a CUDA build newer than the driver supports, or CUDA_VISIBLE_DEVICES hiding GPUs.
import type { GpuInfo, TorchInfo } from '../protocol/types';

/** torch's view as one client obtained it: from a PyTorch engine's `system/info`. */
export interface TorchView {
  torch: TorchInfo | null;
  /** Why there is no torch view (no interpreter that imports torch, the engine failed). */
  error?: string;
  /** The interpreter that answered. */
  python?: string;
  /** How it was chosen, when that is news: a configured interpreter that was skipped, and why. */
  notes?: string[];
}

const BYTES_PER_MIB = 1024 * 1024;

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** `12.4` → [12, 4]; null for anything else. */
function majorMinor(version: string | null | undefined): [number, number] | null {
  const m = /^(\d+)\.(\d+)/.exec(version ?? '');
  return m ? [Number(m[1]), Number(m[2])] : null;
}

function newerThan(a: [number, number], b: [number, number]): boolean {
  return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);
}

function gpuNames(gpus: readonly GpuInfo[]): string {
  const names = [...new Set(gpus.map((g) => g.name))];
  return names.join(', ');
}

/**
 * What the user must hear when torch and nvidia-smi disagree, in plain words with the fix; empty
 * when they agree or when either view is missing (no nvidia-smi says nothing about torch).
 */
export function torchGpuWarnings(torch: TorchInfo | null, gpus: readonly GpuInfo[]): string[] {
  if (!torch || gpus.length === 0) return [];
  const seen = `nvidia-smi sees ${plural(gpus.length, 'GPU')} (${gpuNames(gpus)})`;
  const driverCuda = majorMinor(gpus.find((g) => g.cudaVersion)?.cudaVersion);
  const driverLimit = driverCuda ? ` (the driver supports CUDA up to ${driverCuda.join('.')})` : '';
  if (torch.cudaBuild === null && !torch.hipBuild) {
    return [
      `${seen}, but the installed torch ${torch.version} is a CPU-only build ` +
        `(torch.version.cuda is None), so every model runs on the CPU. Install a CUDA build of ` +
        `torch${driverLimit}: see https://pytorch.org/get-started/locally/`,
    ];
  }
  const out: string[] = [];
  const build = majorMinor(torch.cudaBuild);
  if (build && driverCuda && newerThan(build, driverCuda)) {
    out.push(
      `torch ${torch.version} is built for CUDA ${torch.cudaBuild} but the driver supports ` +
        `CUDA up to ` +
        `${driverCuda.join('.')}: update the NVIDIA driver or install a torch built for CUDA ` +
        `${driverCuda.join('.')} or older`,
    );
  }
  if (!torch.cudaAvailable) {
    out.push(
      `${seen}, but torch.cuda.is_available() is False` +
        (torch.cudaUnavailableReason ? `: ${torch.cudaUnavailableReason}` : ''),
    );
  } else if (torch.deviceCount < gpus.length) {
    out.push(
      `torch sees ${torch.deviceCount} of nvidia-smi's ${plural(gpus.length, 'GPU')}: ` +
        `CUDA_VISIBLE_DEVICES limits which GPUs a process may use`,
    );
  }
  return out;
}

function mib(bytes: number | null): string {
  return bytes === null ? 'unknown' : `${Math.round(bytes / BYTES_PER_MIB)}`;
}

/** The `torch:` block of `model-lens system`'s text output. */
export function formatTorchLines(view: TorchView): string[] {
  const { torch } = view;
  if (!torch) return [`torch: not available (${view.error ?? 'no PyTorch engine answered'})`];
  const build = torch.cudaBuild
    ? `CUDA ${torch.cudaBuild} build`
    : torch.hipBuild
      ? `ROCm ${torch.hipBuild} build`
      : 'CPU-only build';
  const lines = [`torch ${torch.version} (${build})${view.python ? ` in ${view.python}` : ''}`];
  if (!torch.cudaAvailable) {
    lines.push(
      `  torch.cuda.is_available(): False` +
        (torch.cudaUnavailableReason ? ` (${torch.cudaUnavailableReason})` : ''),
    );
    return lines;
  }
  lines.push(`  torch.cuda.is_available(): True, ${plural(torch.deviceCount, 'device')}`);
  for (const d of torch.devices) {
    lines.push(
      `  cuda:${d.index}: ${d.name ?? 'unknown'}, compute capability ` +
        `${d.computeCapability ?? 'unknown'}, ${mib(d.totalBytes)} MiB; ` +
        `allocated ${mib(d.allocatedBytes)} MiB, reserved ${mib(d.reservedBytes)} MiB`,
    );
  }
  return lines;
}
