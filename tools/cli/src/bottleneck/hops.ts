/**
 * The hops of the DMP chain as the bottleneck analysis sees them: for each, the Prometheus series of
 * its latency, throughput and backlog (the same metrics as the dmp-overview dashboard) and the
 * Jaeger spans of its work.
 */

export type HopId = 'broker-mqtt' | 'mqtt' | 'kernel' | 'rocketmq' | 'data';

export interface HistogramRef {
  label: string;
  /** Histogram name without `_bucket`, with its label matchers. */
  metric: string;
  selector?: string;
}

export interface BacklogSpec {
  id: string;
  label: string;
  /** PromQL evaluated over the range (query_range). */
  expr: string;
  /**
   * `messages`: a gauge of held messages, judged in seconds of work (held ÷ the hop's throughput, by
   * Little's law); `seconds`: an age; `ratio`: a share of time.
   */
  unit: 'messages' | 'seconds' | 'ratio';
  /** Backlogged when the (converted) level at the end of the range reaches this… */
  high: number;
  /** …or when it rose by at least this much over the range. */
  rise: number;
  /** false: shown as evidence, never what makes the hop backlogged. */
  judged?: boolean;
}

export interface HopSpec {
  id: HopId;
  title: string;
  service: 'dmp-mqtt' | 'dmp-kernel' | 'dmp-data';
  /** The dmp-overview panel showing this hop's backlog. */
  panel: string;
  /** The hop's latency; a queue's is the time messages wait in it. */
  latency?: HistogramRef;
  /** A hop whose latency is part of this one's (subtracted to get this hop's own time). */
  nested?: HopId;
  /** Further latencies, shown as evidence. */
  details: HistogramRef[];
  /** Counter of messages leaving the hop. */
  throughput: { label: string; counter: string };
  backlog: BacklogSpec[];
  /** A queue between two services rather than work done by one. */
  queue?: boolean;
}

/**
 * Dead letters are consumed by dmp-data too (into `dead_letters`), but off the message path: an old
 * dead-letter backlog must not read as the telemetry's backlog age.
 */
const NOT_DEAD_LETTER_TOPIC = 'topic!~".*dead_letter.*"';

export const HOPS: readonly HopSpec[] = [
  {
    id: 'broker-mqtt',
    title: 'broker → dmp-mqtt (MQTT receive window)',
    service: 'dmp-mqtt',
    panel: 'Hop 1 · EMQX → dmp-mqtt: MQTT receive window used',
    details: [],
    throughput: { label: 'received', counter: 'dmp_mqtt_received_total' },
    backlog: [
      {
        id: 'window',
        label: 'MQTT receive window used (unacknowledged ÷ Receive Maximum)',
        expr: 'max(dmp_mqtt_in_flight / dmp_mqtt_receive_maximum)',
        unit: 'ratio',
        high: 0.9,
        rise: 0.5,
        // The messages are inside dmp-mqtt (hop 2 judges them); the broker holds more only once
        // intake pauses, which the next series judges.
        judged: false,
      },
      {
        id: 'paused',
        label: 'share of time intake paused at Receive Maximum',
        expr: 'max(rate(dmp_mqtt_intake_paused_seconds_total[1m]))',
        unit: 'ratio',
        high: 0.5,
        rise: 0.25,
      },
    ],
    queue: true,
  },
  {
    id: 'mqtt',
    title: 'dmp-mqtt processing + hand-off to dmp-kernel',
    service: 'dmp-mqtt',
    panel: 'Hop 2 · dmp-mqtt → dmp-kernel: messages waiting for the kernel',
    latency: { label: 'MQTT receive → acknowledge', metric: 'dmp_mqtt_process_seconds' },
    nested: 'kernel',
    details: [{ label: 'Ingest call', metric: 'dmp_mqtt_kernel_call_seconds' }],
    throughput: { label: 'forwarded to dmp-kernel', counter: 'dmp_mqtt_forwarded_total' },
    backlog: [
      {
        id: 'processing',
        label: 'messages in dmp-mqtt before the hand-off',
        expr: 'sum(dmp_mqtt_in_flight) - sum(dmp_mqtt_kernel_pending)',
        unit: 'messages',
        high: 1,
        rise: 1,
      },
      {
        id: 'pending',
        label: 'messages waiting for dmp-kernel',
        expr: 'sum(dmp_mqtt_kernel_pending)',
        unit: 'messages',
        high: 1,
        rise: 1,
      },
    ],
  },
  {
    id: 'kernel',
    title: 'dmp-kernel ingest + RocketMQ send',
    service: 'dmp-kernel',
    panel: 'Hop 3 · dmp-kernel: in flight and shed',
    latency: { label: 'Ingest batch', metric: 'dmp_kernel_ingest_seconds' },
    details: [
      { label: 'RocketMQ send', metric: 'dmp_rocketmq_send_seconds', selector: '{service="dmp-kernel"}' },
    ],
    throughput: {
      label: 'sent to RocketMQ',
      counter: 'dmp_kernel_messages_total{outcome="accepted"}',
    },
    backlog: [
      {
        id: 'in-flight',
        label: 'messages being normalized or published',
        expr: 'sum(dmp_kernel_in_flight)',
        unit: 'messages',
        high: 1,
        rise: 1,
      },
    ],
  },
  {
    id: 'rocketmq',
    title: 'RocketMQ → dmp-data delivery (backlog age, consumer in flight)',
    service: 'dmp-data',
    panel: 'Hop 4 · RocketMQ → dmp-data: backlog age and in flight',
    latency: {
      label: 'delivery delay (backlog age)',
      metric: 'dmp_rocketmq_delivery_delay_seconds',
      selector: `{service="dmp-data", ${NOT_DEAD_LETTER_TOPIC}}`,
    },
    details: [],
    throughput: {
      label: 'RocketMQ messages (packs) received by dmp-data',
      counter: `dmp_rocketmq_received_total{service="dmp-data", ${NOT_DEAD_LETTER_TOPIC}}`,
    },
    backlog: [
      {
        id: 'age',
        label: 'backlog age p99',
        expr: `histogram_quantile(0.99, sum by (le) (rate(dmp_rocketmq_delivery_delay_seconds_bucket{service="dmp-data", ${NOT_DEAD_LETTER_TOPIC}}[1m])))`,
        unit: 'seconds',
        high: 10,
        rise: 5,
      },
      {
        id: 'in-flight',
        label: 'messages received, not settled',
        expr: 'sum(dmp_rocketmq_in_flight{service="dmp-data", group!~".*dead_letter.*"})',
        unit: 'messages',
        high: 1,
        rise: 1,
      },
    ],
    queue: true,
  },
  {
    id: 'data',
    title: 'dmp-data batch queue + ClickHouse insert',
    service: 'dmp-data',
    panel: 'Hop 5 · dmp-data → ClickHouse: queued rows and insert latency',
    latency: {
      label: 'handling (batch wait + insert)',
      metric: 'dmp_rocketmq_process_seconds',
      selector: `{service="dmp-data", ${NOT_DEAD_LETTER_TOPIC}}`,
    },
    details: [
      {
        label: 'ClickHouse insert (telemetry tables)',
        metric: 'dmp_clickhouse_insert_seconds',
        selector: '{table=~"telemetry_.*"}',
      },
    ],
    throughput: { label: 'stored', counter: 'dmp_data_messages_total{outcome="stored"}' },
    backlog: [
      {
        id: 'queue',
        label: 'rows held by the batch writer',
        expr: 'sum(dmp_data_queue_rows)',
        unit: 'messages',
        high: 1,
        rise: 1,
      },
    ],
  },
];

export const hopById = (id: HopId): HopSpec => {
  const hop = HOPS.find((h) => h.id === id);
  if (!hop) throw new Error(`unknown hop ${id}`);
  return hop;
};

/** Seconds → a PromQL duration. */
const window = (seconds: number) => `${Math.max(1, Math.round(seconds))}s`;

export function quantileQuery(ref: HistogramRef, q: number, rangeSeconds: number): string {
  return `histogram_quantile(${q}, sum by (le) (increase(${ref.metric}_bucket${ref.selector ?? ''}[${window(rangeSeconds)}])))`;
}

export function throughputQuery(counter: string, rangeSeconds: number): string {
  return `sum(increase(${counter}[${window(rangeSeconds)}])) / ${Math.max(1, Math.round(rangeSeconds))}`;
}

export function throughputSeriesQuery(counter: string): string {
  return `sum(rate(${counter}[1m]))`;
}

/** Every Prometheus query of the analysis, keyed the way the evidence stores their results. */
export interface PlannedQuery {
  key: string;
  kind: 'instant' | 'range';
  expr: string;
}

export function plannedQueries(rangeSeconds: number): PlannedQuery[] {
  const queries: PlannedQuery[] = [];
  const histogram = (key: string, ref: HistogramRef) => {
    queries.push({ key: `${key}.p50`, kind: 'instant', expr: quantileQuery(ref, 0.5, rangeSeconds) });
    queries.push({ key: `${key}.p99`, kind: 'instant', expr: quantileQuery(ref, 0.99, rangeSeconds) });
  };
  for (const hop of HOPS) {
    if (hop.latency) histogram(`${hop.id}.latency`, hop.latency);
    hop.details.forEach((ref, i) => histogram(`${hop.id}.detail${i}`, ref));
    queries.push({
      key: `${hop.id}.throughput`,
      kind: 'instant',
      expr: throughputQuery(hop.throughput.counter, rangeSeconds),
    });
    queries.push({
      key: `${hop.id}.throughput.series`,
      kind: 'range',
      expr: throughputSeriesQuery(hop.throughput.counter),
    });
    for (const backlog of hop.backlog)
      queries.push({ key: `${hop.id}.backlog.${backlog.id}`, kind: 'range', expr: backlog.expr });
  }
  return queries;
}
