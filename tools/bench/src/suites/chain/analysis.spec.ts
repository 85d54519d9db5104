import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { metricSum } from '@dmp/testing';
import {
  chainSummary,
  cpuBudget,
  cpuPercent,
  hopRates,
  fleetMix,
  headline,
  judgeStep,
  microsPerMessage,
  parseMachineStat,
  parseProcStat,
  parseVmRss,
  slope,
  stepPlan,
  summarizeLatencies,
  type StepSample,
} from './analysis';

/** A step's samples, one per second, with rows trailing the broker's acknowledgements. */
function samples(seconds: number, acked: (t: number) => number, rows: (t: number) => number): StepSample[] {
  return Array.from({ length: seconds + 1 }, (_, t) => ({
    atMs: t * 1000,
    sent: acked(t),
    acked: acked(t),
    rows: Math.max(0, rows(t)),
  }));
}

describe('stepPlan', () => {
  it('steps from below the design load (600 msg/s) up to the 20,000 msg/s target in full runs, fewer and shorter steps in quick runs', () => {
    const full = stepPlan(false);
    assert.deepEqual(full.rates, [500, 1_000, 2_000, 5_000, 10_000, 20_000]);
    assert.equal(full.stepMs, 60_000);
    const quick = stepPlan(true);
    assert.ok(quick.rates.length < full.rates.length);
    assert.ok(quick.stepMs < full.stepMs && quick.drainTimeoutMs < full.drainTimeoutMs);
  });

  it('takes rates and step length from the command line, with a warm-up of at most a quarter step', () => {
    const plan = stepPlan(false, { rates: [500, 700], stepSeconds: 8 });
    assert.deepEqual(plan.rates, [500, 700]);
    assert.equal(plan.stepMs, 8_000);
    assert.equal(plan.warmupMs, 2_000);
  });
});

describe('fleetMix', () => {
  it('is the design load (100,000 devices ≈ 600 msg/s, a snapshot each per 5 minutes) at compression 1', () => {
    const mix = fleetMix(600, 100_000);
    assert.equal(mix.timeCompression, 1);
    assert.ok(Math.abs(mix.snapshotsPerSecond - 333.33) < 0.01);
    assert.ok(Math.abs(mix.changesPerSecond + mix.snapshotsPerSecond - 600) < 1e-9);
  });

  it('compresses time to offer more, keeping the proportions', () => {
    const mix = fleetMix(20_000, 100_000);
    assert.ok(Math.abs(mix.timeCompression - 33.33) < 0.01);
    assert.ok(Math.abs(mix.changesPerSecond + mix.snapshotsPerSecond - 20_000) < 1e-6);
    assert.ok(Math.abs(mix.snapshotsPerSecond / 20_000 - 5 / 9) < 1e-9);
  });
});

describe('slope', () => {
  it('fits a line, and is 0 without two distinct points', () => {
    assert.equal(
      slope([
        { x: 0, y: 1 },
        { x: 1, y: 3 },
        { x: 2, y: 5 },
      ]),
      2,
    );
    assert.equal(slope([{ x: 1, y: 1 }]), 0);
    assert.equal(
      slope([
        { x: 1, y: 1 },
        { x: 1, y: 2 },
      ]),
      0,
    );
  });
});

describe('judgeStep', () => {
  const plan = { warmupMs: 5_000, stepMs: 20_000 };

  it('keeps up when rows follow the offered rate with a constant delay', () => {
    const verdict = judgeStep(
      samples(
        20,
        (t) => 1_000 * t,
        (t) => 1_000 * (t - 0.5),
      ),
      1_000,
      plan,
    );
    assert.equal(verdict.saturated, false, verdict.reason);
    assert.equal(Math.round(verdict.throughput), 1_000);
    assert.equal(Math.round(verdict.backlogGrowthPerSecond), 0);
    assert.equal(verdict.reason, '');
  });

  it('is saturated when the pipeline stores less than the broker takes and the backlog grows', () => {
    const verdict = judgeStep(
      samples(
        20,
        (t) => 5_000 * t,
        (t) => 3_000 * t,
      ),
      5_000,
      plan,
    );
    assert.equal(verdict.saturated, true);
    assert.equal(Math.round(verdict.throughput), 3_000);
    assert.equal(Math.round(verdict.backlogGrowthPerSecond), 2_000);
    assert.match(verdict.reason, /stored 3000 of 5000/);
    assert.match(verdict.reason, /backlog grows 2000/);
  });

  it('calls it saturated when the publisher could not offer the target (the bench is the limit)', () => {
    const verdict = judgeStep(
      samples(
        20,
        (t) => 4_000 * t,
        (t) => 4_000 * t,
      ),
      10_000,
      plan,
    );
    assert.equal(verdict.saturated, true);
    assert.match(verdict.reason, /publisher offered 4000 of 10000/);
  });

  it('ignores the warm-up and samples taken while draining', () => {
    // Slow start (nothing stored for 4 s), then keeping up; drain samples after the step add nothing.
    const during = samples(
      20,
      (t) => 1_000 * t,
      (t) => (t < 4 ? 0 : 1_000 * (t - 4) + 4_000 * Math.min(1, t - 4)),
    );
    const drain = [25, 30].map((t) => ({ atMs: t * 1000, sent: 20_000, acked: 20_000, rows: 20_000 }));
    const verdict = judgeStep([...during, ...drain], 1_000, plan);
    assert.equal(verdict.saturated, false, verdict.reason);
    assert.equal(Math.round(verdict.throughput), 1_000);
  });

  it('does not pass a step without samples', () => {
    assert.equal(judgeStep([], 1_000, plan).saturated, true);
  });
});

describe('headline', () => {
  it('reports the best rate kept up with and the peak stored rate', () => {
    const step = (target: number, throughput: number, saturated: boolean) => ({
      target,
      verdict: {
        publishedPerSecond: target,
        ackedPerSecond: target,
        throughput,
        backlogGrowthPerSecond: 0,
        saturated,
        reason: '',
      },
    });
    assert.deepEqual(
      headline([step(1_000, 998, false), step(2_000, 1_995, false), step(5_000, 2_600, true)]),
      {
        bestSustained: 1_995,
        bestSustainedTarget: 2_000,
        peak: 2_600,
      },
    );
    assert.deepEqual(headline([step(1_000, 700, true)]), {
      bestSustained: 0,
      bestSustainedTarget: undefined,
      peak: 700,
    });
  });
});

describe('chainSummary', () => {
  const step = (
    target: number,
    throughput: number,
    saturated: boolean,
    { lost = 0, p99Ms = 800, rows = 5.7, appsUs = 200 } = {},
  ) => ({
    target,
    verdict: {
      publishedPerSecond: target,
      ackedPerSecond: target,
      throughput,
      backlogGrowthPerSecond: 0,
      saturated,
      reason: saturated ? 'backlog grows' : '',
    },
    lost,
    latencyMs: { p99: p99Ms },
    rowsWrittenPerMessage: { telemetry_raw: 1, all: rows },
    appsCpuMicrosPerMessage: appsUs,
  });

  it('quotes the best step that kept up, its p99 in seconds and its costs; lost over every step', () => {
    const summary = chainSummary(
      [
        step(2_000, 1_996.4, false, { p99Ms: 410, rows: 5.74, appsUs: 251.26 }),
        step(5_000, 4_987.6, false, { p99Ms: 930, rows: 5.71, appsUs: 196.04 }),
        step(7_000, 5_874, true, { lost: 3, p99Ms: 7_200, rows: 5.6, appsUs: 180 }),
      ],
      39_990.6,
    );
    assert.deepEqual(summary, {
      sustainedMsgPerSec: 4_988,
      p99Seconds: 0.93,
      lost: 3,
      appsCpuMicrosPerMessage: 196,
      clickhouseRowsPerMessage: 5.71,
      rawBrokerMsgPerSec: 39_991,
    });
    assert.deepEqual(Object.keys(summary), [
      'sustainedMsgPerSec',
      'p99Seconds',
      'lost',
      'appsCpuMicrosPerMessage',
      'clickhouseRowsPerMessage',
      'rawBrokerMsgPerSec',
    ]);
  });

  it('has nulls, not NaN, when no step kept up or a figure was not measured', () => {
    assert.deepEqual(chainSummary([step(1_000, 700, true, { lost: 2 })], 20_000), {
      sustainedMsgPerSec: 0,
      p99Seconds: null,
      lost: 2,
      appsCpuMicrosPerMessage: null,
      clickhouseRowsPerMessage: null,
      rawBrokerMsgPerSec: 20_000,
    });
    const unmeasured = step(1_000, 990, false, { p99Ms: Number.NaN, appsUs: Number.NaN });
    const summary = chainSummary([unmeasured], 20_000);
    assert.equal(summary.p99Seconds, null);
    assert.equal(summary.appsCpuMicrosPerMessage, null);
    assert.equal(summary.clickhouseRowsPerMessage, 5.7);
  });
});

describe('cpuBudget', () => {
  it('splits the CPU per stored message between the apps and the rest, and gives the rates two cores allow', () => {
    // 2,000 msg/s stored; the apps use 120 % of a core, publisher and servers 60 %.
    const budget = cpuBudget(
      { 'dmp-mqtt': 60, 'dmp-kernel': 30, 'dmp-data': 30, bench: 20, clickhouse: 40 },
      2_000,
      ['dmp-mqtt', 'dmp-kernel', 'dmp-data'],
      2,
    );
    assert.equal(budget.appsUs, 600);
    assert.equal(budget.othersUs, 300);
    assert.equal(budget.allUs, 900);
    assert.equal(Math.round(budget.ceiling), 2_222);
    assert.equal(Math.round(budget.ceilingWithoutApps), 6_667);
  });

  it('has no figure for a step that stored nothing', () => {
    assert.ok(Number.isNaN(microsPerMessage(50, 0)));
    assert.ok(Number.isNaN(cpuBudget({ bench: 10 }, 0, [], 2).ceilingWithoutApps));
  });
});

describe('summarizeLatencies', () => {
  it('gives nearest-rank percentiles and the maximum', () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i); // 100 … 1, unsorted on purpose
    assert.deepEqual(summarizeLatencies(values), { samples: 100, p50: 50, p99: 99, max: 100 });
    assert.ok(Number.isNaN(summarizeLatencies([]).p99));
  });
});

describe('/proc parsing', () => {
  it('reads utime + stime from /proc/<pid>/stat, even with spaces and parentheses in the name', () => {
    const stat =
      '4242 (node (dmp) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 11 0 100 1000000 5000';
    assert.deepEqual(parseProcStat(stat), { cpuTicks: 300 });
    assert.throws(() => parseProcStat('1 (x) S'));
  });

  it('reads VmRSS from /proc/<pid>/status', () => {
    assert.equal(parseVmRss('Name:\tnode\nVmRSS:\t  204800 kB\nThreads: 11\n'), 200 * 2 ** 20);
    assert.ok(Number.isNaN(parseVmRss('Name:\tkthreadd\n')));
  });

  it('reads busy and total jiffies of the machine from /proc/stat', () => {
    const stat = 'cpu  100 10 50 800 40 0 0 0 0 0\ncpu0 50 5 25 400 20 0 0 0 0 0\n';
    assert.deepEqual(parseMachineStat(stat), { busy: 160, total: 1_000 });
  });

  it('turns clock ticks into % of one core', () => {
    assert.equal(cpuPercent(1_000, 1_150, 1_000), 150);
    assert.equal(cpuPercent(0, 50, 2_000, 100), 25);
    assert.equal(cpuPercent(0, 50, 0), 0);
  });
});

describe('Prometheus text', () => {
  const text = [
    '# HELP dmp_rocketmq_sent_total Messages sent',
    'dmp_rocketmq_sent_total{topic="a",result="ok"} 10',
    'dmp_rocketmq_sent_total{topic="b",result="ok"} 5',
    'dmp_rocketmq_sent_total{topic="b",result="error"} 2',
    'dmp_rocketmq_sent_total_other 100',
    'dmp_data_batch_rows_sum 42.5',
  ].join('\n');

  it('sums a metric over the label sets that match', () => {
    assert.equal(metricSum(text, 'dmp_rocketmq_sent_total'), 17);
    assert.equal(metricSum(text, 'dmp_rocketmq_sent_total', { result: 'ok' }), 15);
    assert.equal(metricSum(text, 'dmp_data_batch_rows_sum'), 42.5);
    assert.equal(metricSum(text, 'missing'), 0);
  });

  it('turns counters sampled during a step into rates over the window', () => {
    const steps = [0, 5, 10, 15, 20].map((t) => ({
      atMs: t * 1000,
      sent: 0,
      acked: 0,
      rows: 0,
      hops: { received: 1_000 * t, stored: 600 * t },
    }));
    const rates = hopRates(steps, { warmupMs: 5_000, stepMs: 20_000 });
    assert.equal(Math.round(rates.received), 1_000);
    assert.equal(Math.round(rates.stored), 600);
  });
});
