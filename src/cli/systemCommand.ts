import { EngineClient } from '../client/engineClient';
import { systemInfoRequest } from '../protocol/messages';
import { collectSystemReport, systemReportJson } from '../system/systemReport';
import { formatTorchLines, torchGpuWarnings, type TorchView } from '../system/torchView';

/** `import torch` on a loaded machine; the engine's own start limit applies before this. */
const TORCH_INFO_TIMEOUT_MS = 60_000;

export interface SystemCommandOptions {
  json: boolean;
  /** `--python`: whose torch to ask. */
  python?: string;
}

function orUnknown(v: number | string | null | undefined, unit = ''): string {
  return v === null || v === undefined ? 'unknown' : `${v}${unit}`;
}

/**
 * torch's view comes from a PyTorch engine's `system/info`, the same code the editor polls: one
 * answer to "what does torch see", whichever client asks. It runs no user code.
 */
async function collectTorchView(python: string | undefined): Promise<TorchView> {
  let client: EngineClient | undefined;
  try {
    client = await EngineClient.start({ kind: 'pytorch', python, clientName: 'model-lens-cli' });
    const info = await client.request(systemInfoRequest, undefined, {
      timeoutMs: TORCH_INFO_TIMEOUT_MS,
    });
    const executable = client.info.executable;
    const found = { ...(executable ? { python: executable } : {}), notes: client.notes };
    if (!info.torch)
      return { torch: null, error: 'the PyTorch engine reported no torch view', ...found };
    return { torch: info.torch, ...found };
  } catch (err) {
    return { torch: null, error: err instanceof Error ? err.message.split('\n')[0] : String(err) };
  } finally {
    await client?.dispose();
  }
}

/**
 * `model-lens system`: CPU facts, every NVIDIA GPU (`gpus: []` without a driver), torch's own view
 * of CUDA, and what to do when the two disagree.
 */
export async function systemCommand(opts: SystemCommandOptions): Promise<void> {
  const [report, torchView] = await Promise.all([
    collectSystemReport(),
    collectTorchView(opts.python),
  ]);
  for (const note of torchView.notes ?? []) process.stderr.write(`warning: ${note}\n`);
  if (opts.json) {
    process.stdout.write(JSON.stringify(systemReportJson(report, torchView), null, 2) + '\n');
    return;
  }
  const { cpu, gpus } = report;
  const lines = [
    `CPU: ${cpu.model} (${cpu.arch})`,
    `  ${cpu.physicalCores} physical cores, ${cpu.logicalCores} logical threads`,
    `  speed ${orUnknown(cpu.speedMHz, ' MHz')}, max ${orUnknown(cpu.speedMaxMHz, ' MHz')}`,
  ];
  if (gpus.length === 0) {
    lines.push(`GPU: none${report.gpuError ? ` (${report.gpuError})` : ''}`);
  }
  for (const g of gpus) {
    lines.push(
      `GPU ${g.index}: ${g.name}`,
      `  memory ${orUnknown(g.memoryUsedMiB)} / ${orUnknown(g.memoryTotalMiB)} MiB, ` +
        `utilization ${orUnknown(g.utilizationPct, '%')}, ${orUnknown(g.temperatureC, ' °C')}`,
      `  compute capability ${orUnknown(g.computeCapability)}, ` +
        `driver ${orUnknown(g.driverVersion)}` +
        `${g.cudaVersion ? `, CUDA ${g.cudaVersion}` : ''}`,
    );
  }
  lines.push(...formatTorchLines(torchView));
  for (const w of torchGpuWarnings(torchView.torch, gpus)) lines.push(`warning: ${w}`);
  process.stdout.write(lines.join('\n') + '\n');
}
