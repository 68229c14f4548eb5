import { collectSystemReport, systemReportJson } from '../system/systemReport';

function orUnknown(v: number | string | null | undefined, unit = ''): string {
  return v === null || v === undefined ? 'unknown' : `${v}${unit}`;
}

/** `model-lens system`: CPU facts and every NVIDIA GPU; `gpus: []` without a driver. */
export async function systemCommand(json: boolean): Promise<void> {
  const report = await collectSystemReport();
  if (json) {
    process.stdout.write(JSON.stringify(systemReportJson(report), null, 2) + '\n');
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
      `  memory ${orUnknown(g.memoryUsedMiB)} / ${orUnknown(g.memoryTotalMiB)} MiB, utilization ${orUnknown(g.utilizationPct, '%')}, ${orUnknown(g.temperatureC, ' °C')}`,
      `  compute capability ${orUnknown(g.computeCapability)}, driver ${orUnknown(g.driverVersion)}${g.cudaVersion ? `, CUDA ${g.cudaVersion}` : ''}`,
    );
  }
  process.stdout.write(lines.join('\n') + '\n');
}
