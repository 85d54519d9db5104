import type { NormalizedTelemetry } from '@dmp/contracts';
import {
  compileRuleSet,
  emptyState,
  evaluateMessage,
  type Activation,
  type DeviceState,
  type RuleDevice,
  type RuleSet,
} from '@dmp/rules';
import { performance } from 'node:perf_hooks';
import { SimulatedDevice } from '../../../simulator/src/device-model';
import { percentile, seededRandom, type BenchSuite } from '../suite';

/**
 * Rule evaluation throughput: 100 rules (a realistic mix, below) against simulated telemetry (the
 * simulator's devices: change events of one metric, periodic snapshots of all six), evaluated on one
 * thread by the same engine function the kernel calls per message — CEL conditions, scopes, condition
 * state machines (pending/raise/clear), action planning (rendered templates, command ids), state merge.
 * No I/O: the number is the CPU cost of the rules, per core; the kernel adds Redis and RocketMQ round trips.
 */
export const RULE_COUNT = 100;

/** The mix of 100 rules: what rule authors write for this kind of fleet. */
export function benchmarkRules(): string {
  const rules: string[] = [];
  const add = (yaml: string) => rules.push(yaml);
  // 30 threshold alarms on the latest picture, with a duration and hysteresis (the bread and butter).
  const thresholds = [
    ['temperature', '>', 25, '<', 24],
    ['humidity', '>', 60, '<', 55],
    ['voltage', '<', 3.35, '>', 3.4],
    ['rssi', '<', -80, '>', -75],
  ] as const;
  for (let i = 0; i < 30; i++) {
    const [metric, op, limit, clearOp, clearLimit] = thresholds[i % thresholds.length];
    const shift = Math.floor(i / thresholds.length) * 0.5;
    add(`  - id: threshold-${i}
    when: state.latest.${metric} ${op} ${limit + (op === '>' ? shift : -shift)}
    clear: state.latest.${metric} ${clearOp} ${clearLimit}
    for: ${(i % 5) * 15}s
    actions:
      - alarm: { severity: ${['critical', 'major', 'minor', 'warning'][i % 4]}, message: '${metric} {{ state.latest.${metric} }} on {{ device.id }}' }`);
  }
  // 15 change-event rules on what the message itself carries, some with linkage commands.
  for (let i = 0; i < 15; i++)
    add(`  - id: event-${i}
    when: msg.metrics.door_open == ${i % 2 === 0 ? 'true' : 'false'} && device.tags.zone == "z${i % 5}"
    actions:
      - command: { name: light.set, params: { on: ${i % 2 === 0}, zone: '{{ device.tags.zone }}' } }`);
  // 15 rate-of-change rules against the previous value.
  for (let i = 0; i < 15; i++) {
    const metric = ['temperature', 'humidity', 'voltage'][i % 3];
    add(`  - id: delta-${i}
    when: state.latest.${metric} - state.prev.${metric} > ${(0.1 + i * 0.05).toFixed(2)}
    actions:
      - alarm: { severity: info, message: '${metric} jumped on {{ device.id }}' }`);
  }
  // 15 scoped rules (product / tenant / kind): cheap to skip for devices out of scope.
  for (let i = 0; i < 15; i++)
    add(`  - id: scoped-${i}
    scope: { products: [p${i % 5}]${i % 3 === 0 ? ', kinds: [snapshot]' : ''} }
    when: state.latest.temperature > ${20 + (i % 6)} && state.latest.humidity < ${50 + i}
    actions:
      - route: { topic: dmp_bench_route }`);
  // 15 text / tag / site conditions.
  for (let i = 0; i < 15; i++)
    add(`  - id: text-${i}
    when: state.latest.status == "warn" && device.siteId.startsWith("site-${i % 4}") && device.tags.floor != "${i % 3}"
    for: 30s
    actions:
      - alarm: { severity: warning }
      - webhook: { url: 'https://ops.example/hooks/status', params: { site: '{{ device.siteId }}' } }`);
  // 10 compound rules: macros, ternaries, arithmetic.
  for (let i = 0; i < 10; i++)
    add(`  - id: compound-${i}
    when: >
      [state.latest.temperature, state.latest.humidity / 3.0].exists(v, v > ${24 + i * 0.3})
      && (msg.kind == "snapshot" ? state.latest.rssi > -85 : true)
      && size(msg.metrics) >= 1
    actions:
      - alarm: { severity: minor, message: 'compound {{ msg.kind }} on {{ device.id }}' }`);
  return `rules:\n${rules.join('\n')}\n`;
}

interface Workload {
  messages: NormalizedTelemetry[];
  devices: Map<string, RuleDevice>;
}

function workload(deviceCount: number, messageCount: number): Workload {
  const random = seededRandom(42);
  const devices = new Map<string, RuleDevice>();
  const simulated: SimulatedDevice[] = [];
  for (let d = 0; d < deviceCount; d++) {
    const id = `bench-${d}`;
    simulated.push(new SimulatedDevice(id, random));
    devices.set(id, {
      deviceId: id,
      tenantId: `t${d % 3}`,
      productId: `p${d % 7}`,
      siteId: `site-${d % 11}`,
      tags: { zone: `z${d % 5}`, floor: String(d % 4) },
    });
  }
  const messages: NormalizedTelemetry[] = [];
  let ts = 1_767_225_600_000;
  for (let i = 0; i < messageCount; i++) {
    const device = simulated[Math.floor(random() * simulated.length)];
    ts += 5;
    // The design load: a snapshot per device every 5 minutes, change events in between (≈ 1 in 6 is a snapshot).
    const reading = random() < 1 / 6 ? device.snapshot(ts) : device.change(ts);
    const meta = devices.get(device.id)!;
    messages.push({
      deviceId: device.id,
      messageId: reading.messageId,
      kind: reading.channel,
      ts,
      seq: reading.seq,
      metrics: reading.metrics,
      receivedAt: ts,
      tenantId: meta.tenantId,
      productId: meta.productId,
      siteId: meta.siteId,
    });
  }
  return { messages, devices };
}

export const rulesSuite: BenchSuite = {
  name: 'rules',
  description: `rule evaluation throughput, ${RULE_COUNT} rules, one core (engine only, no I/O)`,
  async run({ quick }) {
    const compileStart = performance.now();
    const outcome = compileRuleSet([{ path: 'bench.yaml', text: benchmarkRules() }]);
    if (!outcome.ok)
      throw new Error(`benchmark rules do not compile: ${JSON.stringify(outcome.errors.slice(0, 3))}`);
    const compileMs = performance.now() - compileStart;
    const ruleSet: RuleSet = outcome.ruleSet;
    if (ruleSet.rules.length !== RULE_COUNT)
      throw new Error(`expected ${RULE_COUNT} rules, got ${ruleSet.rules.length}`);

    const deviceCount = quick ? 500 : 2_000;
    const warmup = quick ? 20_000 : 50_000;
    const measured = quick ? 50_000 : 300_000;
    const { messages, devices } = workload(deviceCount, warmup + measured);
    const states = new Map<string, DeviceState>();
    const activations = new Map<string, Map<string, Activation>>();
    let ids = 0;
    const newId = () => `a${++ids}`;
    const counts = { evaluations: 0, matches: 0, noData: 0, errors: 0, transitions: 0, actions: 0 };

    const evaluateOne = (message: NormalizedTelemetry) => {
      const device = devices.get(message.deviceId)!;
      let open = activations.get(message.deviceId);
      if (!open) activations.set(message.deviceId, (open = new Map<string, Activation>()));
      const result = evaluateMessage(
        ruleSet,
        message,
        device,
        states.get(message.deviceId) ?? emptyState(),
        open,
        {
          now: message.ts,
          newId,
        },
      );
      for (const t of result.transitions)
        if (t.after) open.set(t.ruleId, t.after);
        else open.delete(t.ruleId);
      states.set(message.deviceId, result.state);
      return result;
    };

    for (let i = 0; i < warmup; i++) evaluateOne(messages[i]);
    global.gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const latencies = new Float64Array(measured);
    const started = performance.now();
    for (let i = 0; i < measured; i++) {
      const t0 = performance.now();
      const result = evaluateOne(messages[warmup + i]);
      latencies[i] = performance.now() - t0;
      counts.evaluations += result.results.length;
      counts.transitions += result.transitions.length;
      counts.actions += result.actions.length;
      for (const r of result.results)
        if (r.result === 'match') counts.matches += 1;
        else if (r.result === 'no_data') counts.noData += 1;
        else if (r.result === 'error') counts.errors += 1;
    }
    const elapsedMs = performance.now() - started;
    const memory = process.memoryUsage();
    latencies.sort();
    const perSecond = (measured / elapsedMs) * 1000;
    return {
      measurements: [
        { name: 'messages per second (1 core)', value: Math.round(perSecond), unit: 'msg/s' },
        {
          name: 'rule evaluations per second',
          value: Math.round((counts.evaluations / elapsedMs) * 1000),
          unit: 'evals/s',
        },
        { name: 'per message p50', value: percentile(latencies, 50) * 1000, unit: 'µs' },
        { name: 'per message p99', value: percentile(latencies, 99) * 1000, unit: 'µs' },
        { name: 'per message p99.9', value: percentile(latencies, 99.9) * 1000, unit: 'µs' },
        { name: 'per message mean', value: (elapsedMs / measured) * 1000, unit: 'µs' },
        { name: 'rule set compile time', value: compileMs, unit: 'ms' },
        { name: 'heap used (end)', value: memory.heapUsed / 2 ** 20, unit: 'MiB' },
        { name: 'heap growth while measuring', value: (memory.heapUsed - heapBefore) / 2 ** 20, unit: 'MiB' },
        { name: 'rss (end)', value: memory.rss / 2 ** 20, unit: 'MiB' },
      ],
      details: {
        rules: RULE_COUNT,
        devices: deviceCount,
        warmupMessages: warmup,
        measuredMessages: measured,
        elapsedMs,
        ...counts,
        rulesPerMessage: counts.evaluations / measured,
        note: 'engine only (evaluateMessage + in-memory state): the kernel adds Redis/RocketMQ I/O per message',
      },
    };
  },
};
