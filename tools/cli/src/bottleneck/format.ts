import { num, pct, seconds, type BacklogStat, type BottleneckReport, type HopReport } from './analyze';

/** The report as text for a terminal. */
export function formatReport(
  report: BottleneckReport,
  sources: { prometheus: string; jaeger?: string },
): string {
  const minutes = (Date.parse(report.to) - Date.parse(report.from)) / 60_000;
  const lines: string[] = [
    `DMP bottleneck, ${report.from} → ${report.to} (${minutes.toFixed(minutes < 10 ? 1 : 0)} min)`,
    `Prometheus ${sources.prometheus}` +
      (sources.jaeger
        ? `, Jaeger ${sources.jaeger} (${report.traceCount} message traces sampled)`
        : ', no Jaeger'),
    '',
  ];

  const rows = report.hops.map((hop, i) => [
    `${i + 1} ${hop.title}`,
    hop.latency ? `${seconds(hop.latency.p50)} / ${seconds(hop.latency.p99)}` : '–',
    hop.ownP99 !== undefined
      ? `${seconds(hop.ownP99)}${hop.latencyShare !== undefined ? ` (${pct(hop.latencyShare)})` : ''}`
      : '–',
    hop.traces?.p99 !== undefined ? `${seconds(hop.traces.p50)} / ${seconds(hop.traces.p99)}` : '–',
    `${num(hop.throughput.perSecond)} (${num(hop.throughput.first)} → ${num(hop.throughput.last)})`,
    hop.backlog.map(backlogCell).join('; '),
  ]);
  lines.push(
    ...table(
      [
        'hop',
        'p50 / p99',
        'own p99 (share)',
        'traces p50 / p99',
        'msg/s (start → end)',
        'backlog (start → end)',
      ],
      rows,
    ),
    '',
  );

  const v = report.verdict;
  lines.push(v.hop ? `Slowest hop: ${v.title}  [decided by ${v.basis}]` : 'Slowest hop: undetermined');
  lines.push(`  ${v.summary}`);
  for (const line of v.evidence) lines.push(`  - ${line}`);
  if (v.tracesAgree !== undefined)
    lines.push(
      v.tracesAgree
        ? `  - the traces and the histograms both put the largest own time at ${tracesLeader(report.hops)}`
        : `  - the traces put the largest own time at ${tracesLeader(report.hops)}, the histograms elsewhere`,
    );

  if (report.operations.length > 0) {
    lines.push('', 'Span durations per operation (Jaeger sample):');
    lines.push(
      ...table(
        ['service', 'operation', 'spans', 'p50', 'p99'],
        report.operations.map((o) => [
          o.service,
          o.operation,
          String(o.count),
          seconds(o.p50),
          seconds(o.p99),
        ]),
      ).map((l) => `  ${l}`),
    );
  }
  if (report.warnings.length > 0) lines.push('', 'Warnings:', ...report.warnings.map((w) => `  ${w}`));
  return lines.join('\n');
}

function backlogCell(b: BacklogStat): string {
  const fmt = (v: number | undefined) =>
    v === undefined ? '–' : b.unit === 'seconds' ? seconds(v) : b.unit === 'ratio' ? pct(v) : num(v);
  const flag = b.growing ? ' ↑' : b.high ? ' !' : '';
  return `${b.label} ${fmt(b.first)} → ${fmt(b.last)}${flag}`;
}

function tracesLeader(hops: HopReport[]): string {
  const leader = hops
    .filter((h) => h.traces?.share !== undefined)
    .sort((a, b) => b.traces!.share! - a.traces!.share!)[0];
  return leader ? `${leader.title} (${pct(leader.traces!.share!)})` : 'none';
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}
