/**
 * Generated device traffic for the edge's end-to-end test (issue #4): good messages of registered
 * devices (JSON and Protobuf, every channel, injection strings and unicode as text values) and well over
 * a thousand bad inputs of every kind, each with the reason it must be refused for. Everything comes
 * from one seeded PRNG, so a run's inputs are reproducible from the seed it logs.
 * (The catalog of hand-written hostile inputs, one of each, is bad-inputs.ts.)
 */
import { RejectCode, telemetryProtoType } from '@dmp/contracts';
import mqtt, { type MqttClient } from 'mqtt';

export const PROTOBUF_CONTENT_TYPE = 'application/x-protobuf';

export type EdgeMetrics = Record<string, number | boolean | string>;

export interface EdgePublish {
  topic: string;
  payload: Buffer;
  contentType?: string;
}
export interface EdgeGood extends EdgePublish {
  deviceId: string;
  messageId: string;
  kind: 'telemetry' | 'event' | 'snapshot';
  ts: number;
  seq: number;
  metrics: EdgeMetrics;
}
export interface EdgeBad extends EdgePublish {
  category: string;
  expected: string;
}

/** Strings that must never be interpreted anywhere (as metric text values they are good data). */
export const INJECTIONS = [
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
export const UNICODE_TEXTS = [
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

/** A small seeded PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** How a published message is found in the dead-letter store: topic, content type and raw payload. */
export const deadLetterKeyOf = (m: EdgePublish) =>
  `${m.topic}\n${m.contentType ?? ''}\n${m.payload.toString('base64')}`;
export const deadLetterRowKey = (r: { source_topic: string; content_type: string; payload: string }) =>
  `${r.source_topic}\n${r.content_type}\n${r.payload}`;

export interface EdgeInputOptions {
  seed: number;
  /** This run's device id prefix: every generated device id and topic carries it. */
  prefix: string;
  /** Registered devices that send the bad inputs. */
  senders: readonly string[];
  /** Registered devices whose ids the spoofed inputs carry. */
  victims: readonly string[];
  /** dmp-mqtt's MQTT_MAX_PAYLOAD_BYTES. */
  maxPayloadBytes: number;
  /** Device time of the first message (each device's next is 7 ms later). */
  baseTs: number;
}

export type EdgeInputs = ReturnType<typeof edgeInputs>;

/** The generators of one run, all drawing from the same seeded PRNG. */
export function edgeInputs({ seed, prefix, senders, victims, maxPayloadBytes, baseTs }: EdgeInputOptions) {
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const int = (min: number, max: number) => min + Math.floor(random() * (max - min + 1));
  const nonce = () => Math.floor(random() * 2 ** 48).toString(36);
  const randomBuffer = (n: number) =>
    Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));
  function shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }
  const devicePayloadType = telemetryProtoType('DevicePayload');
  const seqByDevice = new Map<string, number>();

  function encode(body: Record<string, unknown>, format: 'json' | 'protobuf'): Buffer {
    if (format === 'json') return Buffer.from(JSON.stringify(body));
    const metrics = Object.fromEntries(
      Object.entries(body.metrics as EdgeMetrics).map(([name, v]) => [
        name,
        typeof v === 'number' ? { number: v } : typeof v === 'boolean' ? { flag: v } : { text: v },
      ]),
    );
    return Buffer.from(devicePayloadType.encode(devicePayloadType.fromObject({ ...body, metrics })).finish());
  }

  /** A valid message of a device; `metrics` and `kind` may be forced. */
  function good(
    deviceId: string,
    options: { metrics?: EdgeMetrics; kind?: EdgeGood['kind']; format?: 'json' | 'protobuf' } = {},
  ): EdgeGood {
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
      format === 'protobuf'
        ? PROTOBUF_CONTENT_TYPE
        : random() < 0.2
          ? 'application/json; charset=utf-8'
          : undefined;
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

  /** Bad inputs of every category, each with the reject code it must be dead-lettered with. */
  function generateBad(): EdgeBad[] {
    const PROTOBUF = PROTOBUF_CONTENT_TYPE;
    const bad: EdgeBad[] = [];
    const sender = () => senders[int(0, senders.length - 1)];
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
    for (const s of senders) add('malformed JSON', RejectCode.MalformedPayload, `devices/${s}/event`, '');
    senders.forEach((s, i) =>
      add('malformed JSON', RejectCode.MalformedPayload, `devices/${s}/snapshot`, `   \n\t ${' '.repeat(i)}`),
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
    add('missing fields', RejectCode.InvalidPayload, `devices/${senders[0]}/telemetry`, '{}');

    // Oversized payloads: valid JSON or garbage, refused before parsing.
    for (let i = 0; i < 60; i++) {
      const size = int(maxPayloadBytes + 1, 40_000);
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

    // Unknown devices: never registered (whatever the payload).
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
      const victim = victims[int(0, victims.length - 1)];
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

  return { random, pick, shuffle, good, validBody, generateBad };
}

/**
 * A few MQTT 5 connections publishing with a bounded window in flight; a topic's messages always use
 * the same connection, so their order is kept.
 */
export class MqttPublisher {
  private readonly waiting: (() => void)[] = [];
  private inFlight = 0;

  private constructor(
    private readonly clients: MqttClient[],
    private readonly window: number,
  ) {}

  static async open(
    url: string,
    clientIdPrefix: string,
    connections: number,
    window = 200,
  ): Promise<MqttPublisher> {
    const clients = await Promise.all(
      Array.from({ length: connections }, (_, i) =>
        mqtt.connectAsync(url, {
          protocolVersion: 5,
          clientId: `${clientIdPrefix}-pub-${i}`,
          clean: true,
          reconnectPeriod: 1_000,
        }),
      ),
    );
    for (const client of clients) client.on('error', () => undefined);
    return new MqttPublisher(clients, window * connections);
  }

  async publish(message: EdgePublish, qos: 0 | 1 = 1): Promise<void> {
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

  publishAll(messages: readonly EdgePublish[]): Promise<void[]> {
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
