import type { HopId } from './hops';
import type { SlimSpan, SlimTrace } from './jaeger.client';
import { quantile } from './stats';

/** Span durations of one operation in a sample of traces. */
export interface OperationStats {
  service: string;
  operation: string;
  count: number;
  /** Seconds. */
  p50: number;
  p99: number;
}

/** A hop's own time per message, measured on the traces that show it. */
export interface TraceHopStats {
  hop: HopId;
  /** How it is measured, e.g. "dmp-data `process dmp_*` span durations". */
  measure: string;
  count: number;
  /** Seconds. */
  p50?: number;
  p99?: number;
}

/** The spans of DMP's message path; everything else (gRPC client calls of the RocketMQ SDK…) is background. */
export const DMP_SERVICES = ['dmp-mqtt', 'dmp-kernel', 'dmp-data'] as const;
const MQTT_RECEIVE = /^receive devices\//;
const MQTT_PROCESS = /^process devices\/.+\/(telemetry|event|snapshot)$/;
const KERNEL_INGEST = /^process kernel\.ingest$/;
const KERNEL_SEND = /^send (\S+)$/;
const DATA_PROCESS = /^process (\S+)$/;
const isDeadLetter = (name: string) => name.includes('dead_letter');

/** Per service, the operations whose traces are message traces (searched in Jaeger). */
export function isMessageOperation(service: string, operation: string): boolean {
  if (service === 'dmp-mqtt') return MQTT_PROCESS.test(operation);
  if (service === 'dmp-kernel') return KERNEL_INGEST.test(operation);
  if (service === 'dmp-data') return DATA_PROCESS.test(operation) && !isDeadLetter(operation);
  return false;
}

const inRange = (span: SlimSpan, fromUs: number, toUs: number) =>
  span.startTime >= fromUs && span.startTime <= toUs;

/** Unique traces (several searches may return the same one). */
export function uniqueTraces(traces: readonly SlimTrace[]): SlimTrace[] {
  const byId = new Map<string, SlimTrace>();
  for (const trace of traces) if (!byId.has(trace.traceID)) byId.set(trace.traceID, trace);
  return [...byId.values()];
}

/** p50/p99 of every operation of the given services, over spans that started in [from, to]. */
export function operationStats(
  traces: readonly SlimTrace[],
  from: Date,
  to: Date,
  services: readonly string[],
): OperationStats[] {
  const fromUs = from.getTime() * 1000;
  const toUs = to.getTime() * 1000;
  const groups = new Map<string, { service: string; operation: string; durations: number[] }>();
  for (const trace of uniqueTraces(traces))
    for (const span of trace.spans) {
      if (!services.includes(span.service) || !inRange(span, fromUs, toUs)) continue;
      const key = `${span.service}\u0000${span.operationName}`;
      const group = groups.get(key) ?? {
        service: span.service,
        operation: span.operationName,
        durations: [],
      };
      group.durations.push(span.duration / 1e6);
      groups.set(key, group);
    }
  return [...groups.values()]
    .map(({ service, operation, durations }) => ({
      service,
      operation,
      count: durations.length,
      p50: quantile(durations, 0.5)!,
      p99: quantile(durations, 0.99)!,
    }))
    .sort((a, b) => services.indexOf(a.service) - services.indexOf(b.service) || b.p99 - a.p99);
}

/**
 * Each hop's own time per message from the traces (one trace per message): dmp-mqtt's process span
 * minus the kernel's ingest span inside it; the kernel's ingest span; the RocketMQ delivery gap
 * (end of the kernel's `send T` → start of dmp-data's `process T`); dmp-data's process span.
 */
export function traceHopStats(traces: readonly SlimTrace[], from: Date, to: Date): TraceHopStats[] {
  const fromUs = from.getTime() * 1000;
  const toUs = to.getTime() * 1000;
  const samples: Record<HopId, number[]> = {
    'broker-mqtt': [],
    mqtt: [],
    kernel: [],
    rocketmq: [],
    data: [],
  };
  for (const trace of uniqueTraces(traces)) {
    // A span is measured when it started in the range; what it is compared with may lie before.
    const all = (service: string, name: RegExp) =>
      trace.spans.filter((s) => s.service === service && name.test(s.operationName));
    const measured = (service: string, name: RegExp) =>
      all(service, name).filter((s) => inRange(s, fromUs, toUs));
    const ingests = all('dmp-kernel', KERNEL_INGEST);
    for (const span of measured('dmp-mqtt', MQTT_RECEIVE)) samples['broker-mqtt'].push(span.duration);
    for (const span of measured('dmp-mqtt', MQTT_PROCESS)) {
      // The kernel's part of the hand-off, when this trace shows it (it lies inside the process span).
      const inside = ingests.find(
        (k) => k.startTime >= span.startTime && k.startTime <= span.startTime + span.duration,
      );
      samples.mqtt.push(Math.max(0, span.duration - (inside?.duration ?? 0)));
    }
    for (const span of measured('dmp-kernel', KERNEL_INGEST)) samples.kernel.push(span.duration);
    const sends = all('dmp-kernel', KERNEL_SEND);
    for (const span of measured('dmp-data', DATA_PROCESS)) {
      if (isDeadLetter(span.operationName)) continue;
      samples.data.push(span.duration);
      const topic = DATA_PROCESS.exec(span.operationName)![1];
      const send = sends.find((s) => s.operationName === `send ${topic}`);
      if (send) samples.rocketmq.push(Math.max(0, span.startTime - (send.startTime + send.duration)));
    }
  }
  const measures: Record<HopId, string> = {
    'broker-mqtt': 'dmp-mqtt `receive devices/+/…` spans',
    mqtt: 'dmp-mqtt `process devices/+/…` minus the `process kernel.ingest` inside it',
    kernel: 'dmp-kernel `process kernel.ingest` spans',
    rocketmq: 'end of dmp-kernel `send T` → start of dmp-data `process T`, same trace',
    data: 'dmp-data `process <topic>` spans',
  };
  return (Object.keys(samples) as HopId[]).map((hop) => {
    const values = samples[hop].map((us) => us / 1e6);
    return {
      hop,
      measure: measures[hop],
      count: values.length,
      ...(values.length ? { p50: quantile(values, 0.5), p99: quantile(values, 0.99) } : {}),
    };
  });
}
