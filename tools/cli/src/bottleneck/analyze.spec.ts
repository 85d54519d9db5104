import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { analyze, type BottleneckReport } from './analyze';
import type { Evidence } from './evidence';
import { formatReport } from './format';
import { plannedQueries, type HopId } from './hops';
import { slimTrace } from './jaeger.client';
import { traceHopStats } from './trace-stats';

/**
 * The fixtures are API answers recorded from the local stack's Prometheus and Jaeger with
 * `dmp bottleneck --save` (see fixtures/README.md), not made-up numbers. The specs run from dist/.
 */
const FIXTURES = join(__dirname, '../../../../../tools/cli/src/bottleneck/fixtures');
const evidence = (name: string) =>
  JSON.parse(readFileSync(join(FIXTURES, `${name}.evidence.json`), 'utf8')) as Evidence;
const hop = (report: BottleneckReport, id: HopId) => report.hops.find((h) => h.id === id)!;

describe('dmp bottleneck analysis (recorded API answers)', () => {
  it('holds exactly the queries the analysis plans (the fixtures follow hops.ts)', () => {
    for (const name of ['slow-clickhouse', 'healthy', 'consumer-starved']) {
      const e = evidence(name);
      const seconds = (Date.parse(e.to) - Date.parse(e.from)) / 1000;
      assert.deepEqual(
        Object.keys(e.prometheus.results).sort(),
        plannedQueries(seconds)
          .map((q) => q.key)
          .sort(),
        name,
      );
      for (const q of plannedQueries(seconds)) assert.equal(e.prometheus.results[q.key].expr, q.expr, q.key);
    }
  });

  it('names the dmp-data hop while ClickHouse answers late, by its rising backlog, with the evidence', () => {
    // Recorded by test/observability.e2e-spec.ts: ClickHouse's answers held back 1.5 s behind a relay.
    const report = analyze(evidence('slow-clickhouse'));
    assert.equal(report.verdict.hop, 'data');
    assert.equal(report.verdict.basis, 'backlog');
    assert.deepEqual(report.warnings, []);

    const data = hop(report, 'data');
    const queue = data.backlog.find((b) => b.id === 'queue')!;
    assert.ok(queue.high || queue.growing);
    assert.ok(queue.level! > 1, `held rows are more than a second of work: ${queue.level}`);
    assert.ok(data.latency!.p99! >= 1.5, 'handling takes longer than the injected 1.5 s');
    assert.ok(data.details[0].p50! >= 1.5, 'and so does the insert');
    // Upstream, RocketMQ's backlog ages: a consequence, named as such.
    const age = hop(report, 'rocketmq').backlog.find((b) => b.id === 'age')!;
    assert.ok(age.growing && age.last! > age.first!, 'the backlog age rises');
    assert.ok(report.verdict.evidence.some((line) => line.startsWith('upstream backlogs')));
    // The evidence quotes the numbers and the queries.
    assert.ok(report.verdict.evidence.some((line) => line.includes('[sum(dmp_data_queue_rows)]')));
    assert.ok(report.verdict.evidence.some((line) => line.includes('dmp_clickhouse_insert_seconds_bucket')));
    // Nothing before dmp-mqtt or inside the kernel is backlogged.
    assert.equal(hop(report, 'kernel').backlogged, false);
    // The traces agree: dmp-data's process spans last longer than the delay injected.
    assert.ok(data.traces!.p50! >= 1.5);
    assert.ok(report.traceCount > 50);
  });

  it('decides from Prometheus alone when there are no traces', () => {
    const e = evidence('slow-clickhouse');
    delete e.jaeger;
    const report = analyze(e);
    assert.equal(report.verdict.hop, 'data');
    assert.equal(report.traceCount, 0);
    assert.deepEqual(report.operations, []);
    assert.equal(report.verdict.tracesAgree, undefined);
    assert.equal(hop(report, 'data').traces, undefined);
  });

  it('names RocketMQ delivery when messages age in RocketMQ while dmp-data holds no backlog', () => {
    // Recorded with dmp-data started with DATA_RECEIVE_POLLERS=1 and DATA_MAX_IN_FLIGHT=4 under the same
    // load: it takes a few messages per second of ~130, its batch writer stays empty.
    const report = analyze(evidence('consumer-starved'));
    assert.equal(report.verdict.hop, 'rocketmq');
    assert.equal(report.verdict.basis, 'backlog');
    const data = hop(report, 'data');
    assert.equal(data.backlogged, false);
    assert.ok(data.backlog[0].last! < 10, 'the batch writer holds (almost) nothing');
    assert.ok(hop(report, 'rocketmq').backlog.find((b) => b.id === 'age')!.growing);
    assert.ok(
      hop(report, 'rocketmq').throughput.last! < hop(report, 'kernel').throughput.last! / 10,
      'dmp-data receives far less than dmp-kernel sends',
    );
    assert.ok(report.verdict.evidence.some((line) => line.startsWith('downstream hops hold no backlog')));
    assert.equal(report.verdict.tracesAgree, true);
  });

  it('without any backlog, names the hop with the largest share of the latency', () => {
    const report = analyze(evidence('healthy'));
    assert.equal(report.verdict.basis, 'latency');
    assert.ok(report.hops.every((h) => !h.backlogged));
    const shares = report.hops.filter((h) => h.latencyShare !== undefined);
    assert.ok(Math.abs(shares.reduce((s, h) => s + h.latencyShare!, 0) - 1) < 1e-9);
    const top = shares.reduce((a, b) => (b.latencyShare! > a.latencyShare! ? b : a));
    assert.equal(report.verdict.hop, top.id);
  });

  it('reports failing queries as warnings, and says when it has nothing to go by', () => {
    const e = evidence('slow-clickhouse');
    for (const [key, result] of Object.entries(e.prometheus.results))
      e.prometheus.results[key] = {
        key,
        kind: result.kind,
        expr: result.expr,
        error: 'bad_data: parse error',
      };
    delete e.jaeger;
    const report = analyze(e);
    assert.equal(report.verdict.basis, 'no-data');
    assert.equal(report.verdict.hop, undefined);
    assert.ok(report.warnings.length >= Object.keys(e.prometheus.results).length);
  });

  it('prints the table, the verdict with its evidence, and the span durations', () => {
    const e = evidence('slow-clickhouse');
    const text = formatReport(analyze(e), { prometheus: e.prometheus.url, jaeger: e.jaeger!.url });
    assert.match(text, /^Slowest hop: dmp-data batch queue \+ ClickHouse insert {2}\[decided by backlog\]$/m);
    assert.match(text, /rows held by the batch writer (rose|stayed high)/);
    assert.match(text, /Span durations per operation \(Jaeger sample\):/);
    assert.match(text, /dmp-data +INSERT telemetry_raw/);
    for (const n of [1, 2, 3, 4, 5]) assert.match(text, new RegExp(`^${n} `, 'm'));
  });
});

describe('per-hop times from a trace (recorded Jaeger answer)', () => {
  it('measures each hop of one message: hand-off, ingest, delivery gap, handling', () => {
    const raw = JSON.parse(readFileSync(join(FIXTURES, 'jaeger-trace.raw.json'), 'utf8')) as {
      data: Parameters<typeof slimTrace>[0][];
    };
    const trace = slimTrace(raw.data[0]);
    const span = (service: string, name: RegExp) =>
      trace.spans.find((s) => s.service === service && name.test(s.operationName))!;
    const mqtt = span('dmp-mqtt', /^process devices\//);
    const ingest = span('dmp-kernel', /^process kernel\.ingest$/);
    const send = span('dmp-kernel', /^send dmp_/);
    const processed = span('dmp-data', /^process dmp_/);
    assert.ok(mqtt && ingest && send && processed, 'the trace crosses every hop');
    assert.equal(send.kind, 'producer');

    const start = new Date(mqtt.startTime / 1000 - 1);
    const end = new Date(processed.startTime / 1000 + processed.duration / 1000 + 1);
    const stats = Object.fromEntries(traceHopStats([trace, trace], start, end).map((s) => [s.hop, s]));
    assert.equal(stats.mqtt.count, 1, 'a trace returned by two searches counts once');
    assert.equal(stats.mqtt.p50, (mqtt.duration - ingest.duration) / 1e6);
    assert.equal(stats.kernel.p50, ingest.duration / 1e6);
    assert.equal(stats.rocketmq.p50, (processed.startTime - send.startTime - send.duration) / 1e6);
    assert.equal(stats.data.p50, processed.duration / 1e6);
    // Spans that started outside the range are not measured.
    const later = traceHopStats([trace], new Date(end.getTime() + 1), new Date(end.getTime() + 60_000));
    assert.ok(later.every((s) => s.count === 0));
  });
});
