// "Why does nvidia-smi say 20 GiB when my tensors are 8?" Three figures, each with the reason it
// differs from the one before: live tensors < PyTorch's reserved pool < what the device reports.
import { formatBytes } from '../shared/format';

const BYTES_PER_MIB = 1024 * 1024;

export interface MemoryThreeWaysInput {
  /** nvidia-smi memory.used of the run's GPU: every process on it. */
  deviceUsedMiB: number | null;
  /** nvidia-smi compute-apps used_memory for the run's pid on that GPU (null under MIG/WDDM). */
  processUsedMiB: number | null;
  /** torch.cuda.memory_reserved(): the caching allocator's pool. */
  torchReservedBytes: number | null;
  /** torch.cuda.memory_allocated(): live tensors. */
  torchAllocatedBytes: number | null;
}

export type MemoryFigureKey = 'allocated' | 'reserved' | 'device';

export interface MemoryFigure {
  key: MemoryFigureKey;
  label: string;
  bytes: number | null;
  /** One line saying what the figure counts and why it exceeds the previous one. */
  explanation: string;
}

export interface MemoryThreeWays {
  figures: [MemoryFigure, MemoryFigure, MemoryFigure];
  /** reserved − allocated: free blocks the caching allocator keeps (fragmentation included). */
  cachedBytes: number | null;
  /** process − reserved: CUDA context, kernels, library workspaces, non-PyTorch allocations. */
  overheadBytes: number | null;
  /** device − process: memory held by other processes on the same GPU. */
  otherProcessesBytes: number | null;
}

function mibToBytes(mib: number | null): number | null {
  return mib === null ? null : mib * BYTES_PER_MIB;
}

/**
 * Differences of figures measured by different tools at slightly different moments, and rounded
 * to MiB by nvidia-smi, can come out a little negative; show them as 0 rather than as nonsense.
 */
function gap(larger: number | null, smaller: number | null): number | null {
  return larger === null || smaller === null ? null : Math.max(0, larger - smaller);
}

export function memoryThreeWays(input: MemoryThreeWaysInput): MemoryThreeWays {
  const allocated = input.torchAllocatedBytes;
  const reserved = input.torchReservedBytes;
  const device = mibToBytes(input.deviceUsedMiB);
  const proc = mibToBytes(input.processUsedMiB);
  const cachedBytes = gap(reserved, allocated);
  const overheadBytes = gap(proc, reserved);
  const otherProcessesBytes = gap(device, proc);

  const allocatedLine =
    allocated === null
      ? 'PyTorch reported no allocator figures (no CUDA tensors yet, or not a CUDA run).'
      : 'Live tensors (torch.cuda.memory_allocated): what your parameters, activations and optimizer state occupy now.';

  let reservedLine: string;
  if (reserved === null) reservedLine = 'PyTorch reported no reserved pool.';
  else if (cachedBytes === null)
    reservedLine = "Held by PyTorch's caching allocator (torch.cuda.memory_reserved).";
  else {
    reservedLine =
      `Held by PyTorch's caching allocator: ${formatBytes(cachedBytes)} above live tensors are cached free blocks ` +
      '(kept for reuse, fragmentation included; torch.cuda.empty_cache() gives them back).';
  }

  let deviceLine: string;
  if (device === null) deviceLine = 'nvidia-smi did not report memory use for this GPU.';
  else {
    const parts: string[] = [];
    if (proc === null)
      parts.push('per-process use unavailable, so other processes cannot be told apart');
    else {
      parts.push(`this process ${formatBytes(proc)}`);
      if (overheadBytes !== null)
        parts.push(
          `${formatBytes(overheadBytes)} of it beyond PyTorch's pool (CUDA context, kernels, library workspaces)`,
        );
      parts.push(`other processes ${formatBytes(otherProcessesBytes)}`);
    }
    deviceLine = `Used on the GPU per nvidia-smi, every process included: ${parts.join('; ')}.`;
  }

  return {
    figures: [
      { key: 'allocated', label: 'Allocated', bytes: allocated, explanation: allocatedLine },
      { key: 'reserved', label: 'Reserved', bytes: reserved, explanation: reservedLine },
      { key: 'device', label: 'Device', bytes: device, explanation: deviceLine },
    ],
    cachedBytes,
    overheadBytes,
    otherProcessesBytes,
  };
}
