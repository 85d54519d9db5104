/**
 * The catalog of hostile device inputs (issue #18): every template states what must become of it —
 *  - `refused`: exactly one dead letter with this code (dmp-mqtt's edge codes, or dmp-data's cleaning
 *    codes for what only the stored data can tell, such as a timestamp in the future);
 *  - `notDelivered`: the broker refuses it or never routes it to dmp-mqtt: no dead letter, nothing stored;
 *  - `stored`: hostile-looking but valid (odd MQTT 5 properties, QoS 0 and 2, values at a limit): stored
 *    once, the oddity ignored.
 * Templates are plain data and builders, so that a test sends each once between good messages and checks
 * the good ones all arrive. Limits come from the contract (`@dmp/contracts`), not from copies of it.
 */
import {
  MAX_METRICS,
  MAX_TEXT_VALUE_LENGTH,
  RejectCode,
  telemetryProtoType,
  type MetricValue,
} from '@dmp/contracts';
import type { IClientPublishOptions } from 'mqtt';

/** dmp-data's cleaning codes that a template can meet (docs/analysts.md). */
export const CleanRefusal = {
  TsFuture: 'DMP_ERR_CLEAN_TS_FUTURE',
  TsTooOld: 'DMP_ERR_CLEAN_TS_TOO_OLD',
} as const;

export type BadInputExpected =
  | { refused: RejectCode; by: 'dmp-mqtt' }
  | { refused: (typeof CleanRefusal)[keyof typeof CleanRefusal]; by: 'dmp-data' }
  | { notDelivered: string }
  | { stored: true };

export interface BadInputContext {
  /** A registered, enabled device: the sender. */
  device: string;
  /** Another registered device. */
  victim: string;
  /** A device id that was never registered. */
  unknown: string;
  /** A fresh message id for this template (ASCII, well under the limit). */
  messageId: string;
  /** A past device time, unique per template. */
  ts: number;
  /** dmp-mqtt's MQTT_MAX_PAYLOAD_BYTES. */
  maxPayloadBytes: number;
  /** dmp-mqtt's own MQTT 5 Maximum Packet Size (what the broker may send it). */
  maxPacketBytes: number;
}

export interface HostilePublish {
  topic: string;
  payload: Buffer;
  qos?: 0 | 1 | 2;
  retain?: boolean;
  properties?: NonNullable<IClientPublishOptions['properties']>;
  /** Sent on a connection of its own: the broker may close the connection over it. */
  ownConnection?: boolean;
  /** The message id it is stored under, when not the context's. */
  storedAs?: string;
}

export interface BadTemplate {
  name: string;
  group: string;
  expected: BadInputExpected;
  build(ctx: BadInputContext): HostilePublish;
}

// ---------------------------------------------------------------------------------------------------
// Payload builders
// ---------------------------------------------------------------------------------------------------

const PROTOBUF = 'application/x-protobuf';
const edge = (refused: RejectCode): BadInputExpected => ({ refused, by: 'dmp-mqtt' });
const stored: BadInputExpected = { stored: true };
const MALFORMED = edge(RejectCode.MalformedPayload);
const INVALID = edge(RejectCode.InvalidPayload);

const body = (ctx: BadInputContext, extra: Record<string, unknown> = {}) => ({
  messageId: ctx.messageId,
  ts: ctx.ts,
  metrics: { t: 1 },
  ...extra,
});
const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const on = (ctx: BadInputContext, channel = 'telemetry') => `devices/${ctx.device}/${channel}`;
const jsonOn = (ctx: BadInputContext, payload: Buffer | string, contentType?: string): HostilePublish => ({
  topic: on(ctx),
  payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
  ...(contentType ? { properties: { contentType } } : {}),
});
const protoOn = (ctx: BadInputContext, payload: Buffer): HostilePublish => ({
  topic: on(ctx),
  payload,
  properties: { contentType: PROTOBUF },
});

const devicePayloadType = telemetryProtoType('DevicePayload');
/** A DevicePayload as protobufjs encodes it (metric values in their oneof). */
export function protoPayload(value: {
  deviceId?: string;
  messageId?: string;
  ts?: number;
  seq?: number;
  metrics?: Record<string, MetricValue>;
  traceparent?: string;
}): Buffer {
  const metrics = Object.fromEntries(
    Object.entries(value.metrics ?? {}).map(([name, v]) => [
      name,
      typeof v === 'number' ? { number: v } : typeof v === 'boolean' ? { flag: v } : { text: v },
    ]),
  );
  return Buffer.from(devicePayloadType.encode(devicePayloadType.fromObject({ ...value, metrics })).finish());
}

// Protobuf wire format by hand, for what an encoder would never write.
function varint(n: bigint | number): Buffer {
  let v = BigInt(n);
  if (v < 0n) v &= (1n << 64n) - 1n;
  const bytes: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    bytes.push(b);
  } while (v > 0n);
  return Buffer.from(bytes);
}
const tag = (field: number, wireType: number) => varint((field << 3) | wireType);
const ld = (field: number, bytes: Buffer | string) => {
  const b = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
  return Buffer.concat([tag(field, 2), varint(b.length), b]);
};
const vi = (field: number, n: bigint | number) => Buffer.concat([tag(field, 0), varint(n)]);
const f64 = (field: number, x: number) => {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(x);
  return Buffer.concat([tag(field, 1), b]);
};
/** message_id and ts, valid: a prefix that makes the rest the only problem. */
const head = (ctx: BadInputContext) => Buffer.concat([ld(2, ctx.messageId), vi(3, ctx.ts)]);
const metricEntry = (name: Buffer | string, value?: Buffer) =>
  ld(5, Buffer.concat([ld(1, name), ...(value ? [ld(2, value)] : [])]));

// ---------------------------------------------------------------------------------------------------
// The templates
// ---------------------------------------------------------------------------------------------------

const templates: BadTemplate[] = [];
const add = (group: string, name: string, expected: BadInputExpected, build: BadTemplate['build']) =>
  templates.push({ group, name, expected, build });

// ---- Malformed JSON --------------------------------------------------------------------------------
{
  const g = 'malformed JSON';
  const variants: [string, (ctx: BadInputContext) => string | Buffer][] = [
    ['empty payload', () => ''],
    ['whitespace only', () => ' \n\t '],
    ['truncated object', (c) => JSON.stringify(body(c)).slice(0, -2)],
    ['trailing comma', (c) => `{"messageId":"${c.messageId}","ts":${c.ts},"metrics":{"t":1},}`],
    ['single quotes', (c) => JSON.stringify(body(c)).replace(/"/g, "'")],
    ['unquoted keys', (c) => `{messageId:"${c.messageId}",ts:${c.ts},metrics:{}}`],
    ['NaN literal', (c) => `{"messageId":"${c.messageId}","ts":${c.ts},"metrics":{"t":NaN}}`],
    ['Infinity literal', (c) => `{"messageId":"${c.messageId}","ts":${c.ts},"metrics":{"t":Infinity}}`],
    ['comment', (c) => `// hi\n${JSON.stringify(body(c))}`],
    ['two documents', (c) => `${JSON.stringify(body(c))}\n${JSON.stringify(body(c))}`],
    ['trailing garbage', (c) => `${JSON.stringify(body(c))}x`],
    ['undefined', (c) => `undefined ${c.messageId}`],
    ['hex number', (c) => `{"messageId":"${c.messageId}","ts":0x10,"metrics":{}}`],
    ['leading zero', (c) => `{"messageId":"${c.messageId}","ts":0${c.ts},"metrics":{}}`],
    ['unterminated string', (c) => `{"messageId":"${c.messageId}`],
    ['bad escape', (c) => `{"messageId":"${c.messageId}\\x41","ts":${c.ts},"metrics":{}}`],
    ['raw control character in a string', (c) => `{"messageId":"${c.messageId}\u0001","ts":1,"metrics":{}}`],
    ['UTF-16 encoded JSON', (c) => Buffer.from(`\ufeff${JSON.stringify(body(c))}`, 'utf16le')],
    ['invalid UTF-8 (0xff) before the JSON', (c) => Buffer.concat([Buffer.from([0xff]), json(body(c))])],
    ['2,000 nested arrays, one unclosed', (c) => `${'['.repeat(2_000)}"${c.messageId}"${']'.repeat(1_999)}`],
  ];
  for (const [name, build] of variants) add(g, name, MALFORMED, (c) => jsonOn(c, build(c)));
}

// ---- Wrong types and values: each field, each wrong value -------------------------------------------
{
  const g = 'wrong types';
  const wrong: Record<string, [string, unknown][]> = {
    messageId: [
      ['null', null],
      ['number', 42],
      ['empty', ''],
      ['129 characters', 'm'.repeat(129)],
      ['a slash', 'a/b'],
      ['a space', 'a b'],
      ['an array', ['a']],
      ['non-ASCII', 'mé'],
    ],
    ts: [
      ['null', null],
      ['a string', '1732200000000'],
      ['true', true],
      ['fractional', 1.5],
      ['negative', -1],
      ['zero', 0],
      ['above MAX_SAFE_INTEGER', Number.MAX_SAFE_INTEGER + 2],
      ['an object', { ms: 1 }],
    ],
    seq: [
      ['null', null],
      ['negative', -1],
      ['a string', '1'],
      ['fractional', 0.5],
      ['above MAX_SAFE_INTEGER', 2 ** 60],
    ],
    metrics: [
      ['null', null],
      ['an array', [1, 2]],
      ['a string', 't=1'],
      ['a nested object value', { t: { v: 1 } }],
      ['an array value', { t: [1] }],
      ['a null value', { t: null }],
      ['an empty name', { '': 1 }],
      ['a name starting with a digit', { '1t': 1 }],
      ['a name with a dash', { 't-1': 1 }],
      ['a 65-character name', { [`t${'x'.repeat(64)}`]: 1 }],
      ['a name with a slash', { 'a/b': 1 }],
      ['a name with a space', { 'a b': 1 }],
      ['__proto__ as a name', JSON.parse('{"__proto__": 1}') as unknown],
    ],
    deviceId: [
      ['null', null],
      ['number', 7],
      ['empty', ''],
      ['with a wildcard', 'a+b'],
      ['65 characters', 'd'.repeat(65)],
    ],
    traceparent: [
      ['null', null],
      ['number', 1],
      ['129 characters', 't'.repeat(129)],
    ],
  };
  for (const [field, values] of Object.entries(wrong))
    for (const [what, value] of values)
      add(g, `${field}: ${what}`, INVALID, (c) => jsonOn(c, json(body(c, { [field]: value }))));
  add(g, 'ts 1e400 (Infinity)', INVALID, (c) =>
    jsonOn(c, `{"messageId":"${c.messageId}","ts":1e400,"metrics":{}}`),
  );
  add(g, 'metric 1e999 (Infinity): the whole message, not one metric', INVALID, (c) =>
    jsonOn(c, `{"messageId":"${c.messageId}","ts":${c.ts},"metrics":{"ok":1,"t":1e999}}`),
  );
  add(g, 'metric -1e999', INVALID, (c) =>
    jsonOn(c, `{"messageId":"${c.messageId}","ts":${c.ts},"metrics":{"t":-1e999}}`),
  );
  for (const [what, value] of [
    ['null', null],
    ['a number', 5],
    ['a string', 'x'],
    ['true', true],
    ['an array', []],
  ] as const)
    add(g, `the payload is ${what}`, INVALID, (c) =>
      jsonOn(c, `${JSON.stringify(value)}${' '.repeat(c.ts % 7)}`),
    );
}

// ---- Missing and unknown fields (the schema is strict) ---------------------------------------------
{
  const g = 'missing or unknown fields';
  for (const field of ['messageId', 'ts', 'metrics'])
    add(g, `no ${field}`, INVALID, (c) => {
      const b: Record<string, unknown> = body(c);
      delete b[field];
      return jsonOn(c, json({ ...b, seq: c.ts % 1000 }));
    });
  add(g, 'empty object', INVALID, (c) => jsonOn(c, `{${' '.repeat(c.ts % 5)}}`));
  for (const extra of ['unexpected', 'Metrics', 'MessageId', 'tracestate', 'kind', 'receivedAt', 'tenantId'])
    add(g, `unknown field ${extra}`, INVALID, (c) => jsonOn(c, json(body(c, { [extra]: 'x' }))));
  add(g, 'field names differing by case only', INVALID, (c) =>
    jsonOn(c, json({ ...body(c), messageID: c.messageId })),
  );
}

// ---- Limits: at (stored) and just over (refused) ---------------------------------------------------
{
  const g = 'limits';
  const metricsOf = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`m${i}`, i]));
  add(g, `${MAX_METRICS} metrics`, stored, (c) =>
    jsonOn(c, json(body(c, { metrics: metricsOf(MAX_METRICS) }))),
  );
  add(g, `${MAX_METRICS + 1} metrics`, INVALID, (c) =>
    jsonOn(c, json(body(c, { metrics: metricsOf(MAX_METRICS + 1) }))),
  );
  add(g, `${MAX_METRICS} metrics (protobuf)`, stored, (c) =>
    protoOn(c, protoPayload({ messageId: c.messageId, ts: c.ts, metrics: metricsOf(MAX_METRICS) })),
  );
  add(g, `${MAX_METRICS + 1} metrics (protobuf)`, INVALID, (c) =>
    protoOn(c, protoPayload({ messageId: c.messageId, ts: c.ts, metrics: metricsOf(MAX_METRICS + 1) })),
  );
  // Text limits count code points (the contract's rule; docs/devices.md), not UTF-16 units or bytes.
  const texts: [string, string][] = [
    ['ASCII', 'a'],
    ['Latin-1 (2 UTF-8 bytes)', 'é'],
    ['CJK (3 UTF-8 bytes)', '中'],
    ['astral emoji (2 UTF-16 units, 4 UTF-8 bytes)', '😀'],
  ];
  for (const [what, ch] of texts) {
    add(g, `text of ${MAX_TEXT_VALUE_LENGTH} code points, ${what}`, stored, (c) =>
      jsonOn(c, json(body(c, { metrics: { t: 1, note: ch.repeat(MAX_TEXT_VALUE_LENGTH) } }))),
    );
    add(g, `text of ${MAX_TEXT_VALUE_LENGTH + 1} code points, ${what}`, INVALID, (c) =>
      jsonOn(c, json(body(c, { metrics: { note: ch.repeat(MAX_TEXT_VALUE_LENGTH + 1) } }))),
    );
  }
  add(g, `text of ${MAX_TEXT_VALUE_LENGTH} code points, astral (protobuf)`, stored, (c) =>
    protoOn(
      c,
      protoPayload({
        messageId: c.messageId,
        ts: c.ts,
        metrics: { note: '😀'.repeat(MAX_TEXT_VALUE_LENGTH) },
      }),
    ),
  );
  add(g, `text of ${MAX_TEXT_VALUE_LENGTH + 1} code points, astral (protobuf)`, INVALID, (c) =>
    protoOn(
      c,
      protoPayload({
        messageId: c.messageId,
        ts: c.ts,
        metrics: { note: '😀'.repeat(MAX_TEXT_VALUE_LENGTH + 1) },
      }),
    ),
  );
  add(g, 'message id of 128 characters', stored, (c) => {
    const messageId = `${c.messageId}-`.padEnd(128, 'x');
    return { ...jsonOn(c, json(body(c, { messageId }))), storedAs: messageId };
  });
  add(g, 'metric name of 64 characters', stored, (c) =>
    jsonOn(c, json(body(c, { metrics: { [`n${'x'.repeat(63)}`]: 1 } }))),
  );
  add(g, 'traceparent of 128 characters', stored, (c) =>
    jsonOn(c, json(body(c, { traceparent: 'z'.repeat(128) }))),
  );
  add(
    g,
    'ts = MAX_SAFE_INTEGER: valid at the edge, in the future for dmp-data',
    { refused: CleanRefusal.TsFuture, by: 'dmp-data' },
    (c) => jsonOn(c, json(body(c, { ts: Number.MAX_SAFE_INTEGER }))),
  );
  add(g, 'ts an hour ahead', { refused: CleanRefusal.TsFuture, by: 'dmp-data' }, (c) =>
    jsonOn(c, json(body(c, { ts: Date.now() + 3_600_000 }))),
  );
  add(g, 'ts = 1 (1970)', { refused: CleanRefusal.TsTooOld, by: 'dmp-data' }, (c) =>
    jsonOn(c, json(body(c, { ts: 1 }))),
  );
  add(g, 'seq = MAX_SAFE_INTEGER', stored, (c) => jsonOn(c, json(body(c, { seq: Number.MAX_SAFE_INTEGER }))));
  // Payload size: the limit counts bytes of the payload, whatever they are.
  const padded = (c: BadInputContext, size: number) => {
    const text = JSON.stringify(body(c));
    return Buffer.from(text + ' '.repeat(size - Buffer.byteLength(text)));
  };
  add(g, 'payload of exactly MQTT_MAX_PAYLOAD_BYTES', stored, (c) => jsonOn(c, padded(c, c.maxPayloadBytes)));
  add(g, 'payload of MQTT_MAX_PAYLOAD_BYTES + 1', edge(RejectCode.PayloadTooLarge), (c) =>
    jsonOn(c, padded(c, c.maxPayloadBytes + 1)),
  );
  add(
    g,
    'payload of MQTT_MAX_PAYLOAD_BYTES + 1 (protobuf content type)',
    edge(RejectCode.PayloadTooLarge),
    (c) => protoOn(c, padded(c, c.maxPayloadBytes + 1)),
  );
  add(
    g,
    'payload of MQTT_MAX_PAYLOAD_BYTES + 1 from an unknown device',
    edge(RejectCode.UnknownDevice),
    (c) => ({
      ...jsonOn(c, padded(c, c.maxPayloadBytes + 1)),
      topic: `devices/${c.unknown}/telemetry`,
    }),
  );
  add(g, '100 KiB of binary garbage', edge(RejectCode.PayloadTooLarge), (c) =>
    jsonOn(c, Buffer.concat([Buffer.from(c.messageId), Buffer.alloc(100 * 1024, 0xab)])),
  );
  add(
    g,
    "a packet over dmp-mqtt's Maximum Packet Size",
    { notDelivered: 'the broker acknowledges it and never sends it to dmp-mqtt' },
    (c) => jsonOn(c, Buffer.concat([Buffer.from(c.messageId), Buffer.alloc(c.maxPacketBytes, 0x20)])),
  );
}

// ---- Spoofing, unknown devices ---------------------------------------------------------------------
{
  const g = 'identity';
  add(g, "another registered device's id in the payload", edge(RejectCode.SpoofedDevice), (c) =>
    jsonOn(c, json(body(c, { deviceId: c.victim }))),
  );
  add(g, "another device's id in the payload (protobuf)", edge(RejectCode.SpoofedDevice), (c) =>
    protoOn(c, protoPayload({ deviceId: c.victim, messageId: c.messageId, ts: c.ts, metrics: { t: 1 } })),
  );
  add(g, 'the topic id in other case in the payload', edge(RejectCode.SpoofedDevice), (c) =>
    jsonOn(c, json(body(c, { deviceId: c.device.toUpperCase() }))),
  );
  for (const channel of ['telemetry', 'event', 'snapshot'])
    add(g, `unknown device on ${channel}`, edge(RejectCode.UnknownDevice), (c) => ({
      topic: `devices/${c.unknown}/${channel}`,
      payload: json(body(c)),
    }));
  add(g, 'unknown device, garbage payload', edge(RejectCode.UnknownDevice), (c) => ({
    topic: `devices/${c.unknown}/event`,
    payload: Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(c.messageId)]),
  }));
  add(g, 'unknown device, its own id in the payload', edge(RejectCode.UnknownDevice), (c) => ({
    topic: `devices/${c.unknown}/snapshot`,
    payload: json(body(c, { deviceId: c.unknown })),
  }));
}

// ---- Topics ------------------------------------------------------------------------------------------
{
  const g = 'topics';
  const wrongTopic = edge(RejectCode.WrongTopic);
  // Matching dmp-mqtt's subscriptions (devices/+/{channel}) with an invalid device id: refused.
  const badIds: [string, (c: BadInputContext) => string][] = [
    ['a 65-character device id', (c) => `${c.device}-`.padEnd(65, 'x')],
    ['a space in the device id', (c) => `${c.device} x`],
    ['a non-ASCII device id', (c) => `${c.device}-ü`],
    ['an emoji device id', (c) => `${c.device}-😀`],
    ['an SQL injection as device id', (c) => `${c.device}';DROP TABLE x;--`],
    ['a right-to-left override in the device id', (c) => `${c.device}\u202e`],
    ['a zero-width space in the device id', (c) => `${c.device}\u200b`],
  ];
  for (const [what, id] of badIds)
    for (const channel of ['telemetry', 'heartbeat'])
      add(g, `${what} (${channel})`, wrongTopic, (c) => ({
        topic: `devices/${id(c)}/${channel}`,
        payload: json(body(c)),
      }));
  add(g, 'an empty device id', wrongTopic, (c) => ({ topic: 'devices//telemetry', payload: json(body(c)) }));
  // Not matching any subscription: EMQX's ACL refuses them in production; here the broker has no
  // subscriber for them. Either way dmp-mqtt never sees them, so there is no dead letter.
  const unrouted = { notDelivered: 'no dmp-mqtt subscription matches (EMQX refuses it by ACL)' };
  for (const channel of ['foo', 'command', 'TELEMETRY', 'telemetry ', 'status', ''])
    add(g, `unknown channel "${channel}"`, unrouted, (c) => ({
      topic: `devices/${c.device}/${channel}`,
      payload: json(body(c)),
    }));
  add(g, 'an extra level', unrouted, (c) => ({ topic: `${on(c)}/extra`, payload: json(body(c)) }));
  add(g, 'no channel level', unrouted, (c) => ({ topic: `devices/${c.device}`, payload: json(body(c)) }));
  add(g, 'another root', unrouted, (c) => ({
    topic: `device/${c.device}/telemetry`,
    payload: json(body(c)),
  }));
  add(g, 'a leading slash', unrouted, (c) => ({ topic: `/${on(c)}`, payload: json(body(c)) }));
  const closed = { notDelivered: 'the broker closes the connection (protocol error)' };
  add(g, 'a + wildcard in a published topic', closed, (c) => ({
    topic: `devices/+/telemetry`,
    payload: json(body(c)),
    ownConnection: true,
  }));
  add(g, 'a # wildcard in a published topic', closed, (c) => ({
    topic: `devices/${c.device}/#`,
    payload: json(body(c)),
    ownConnection: true,
  }));
  add(g, 'U+0000 in the topic', closed, (c) => ({
    topic: `devices/${c.device}\u0000/telemetry`,
    payload: json(body(c)),
    ownConnection: true,
  }));
}

// ---- Binary garbage and content types ------------------------------------------------------------
{
  const g = 'content types';
  for (const ct of [
    'text/plain',
    'application/xml',
    'image/png',
    'application/octet-stream',
    'json',
    'x'.repeat(1000),
  ])
    add(g, `unsupported content type ${ct.slice(0, 30)}`, MALFORMED, (c) => jsonOn(c, json(body(c)), ct));
  for (const ct of [
    'APPLICATION/JSON',
    'application/json; charset=utf-8',
    'application/vnd.dmp+json',
    ' application/json ',
  ])
    add(g, `accepted JSON content type "${ct}"`, stored, (c) => jsonOn(c, json(body(c)), ct));
  for (const ct of [
    'application/protobuf',
    'application/vnd.google.protobuf',
    'Application/X-Protobuf; proto=dmp',
  ])
    add(g, `accepted Protobuf content type "${ct}"`, stored, (c) => ({
      ...protoOn(c, protoPayload(body(c))),
      properties: { contentType: ct },
    }));
  add(g, 'JSON sent as Protobuf', MALFORMED, (c) => protoOn(c, json(body(c))));
  add(g, 'Protobuf sent as JSON', MALFORMED, (c) => jsonOn(c, protoPayload(body(c))));
  add(g, 'Protobuf sent without content type', MALFORMED, (c) => ({
    topic: on(c, 'event'),
    payload: protoPayload(body(c)),
  }));
  add(
    g,
    'a newline in the content type',
    { notDelivered: 'the broker closes the connection (malformed UTF-8)' },
    (c) => ({
      ...jsonOn(c, json(body(c)), 'application/json\n'),
      ownConnection: true,
    }),
  );
}

// ---- Hostile Protobuf ------------------------------------------------------------------------------
{
  const g = 'hostile Protobuf';
  const cases: [string, BadInputExpected, (c: BadInputContext) => Buffer][] = [
    ['empty payload (every field default)', INVALID, () => Buffer.alloc(0)],
    [
      'ts with the wrong wire type (length-delimited)',
      INVALID,
      (c) => Buffer.concat([ld(2, c.messageId), ld(3, String(c.ts))]),
    ],
    [
      'message_id with the wrong wire type (varint)',
      INVALID,
      (c) => Buffer.concat([vi(2, 7), vi(3, c.ts), metricEntry('t', f64(1, 1))]),
    ],
    ['ts as a fixed64', INVALID, (c) => Buffer.concat([ld(2, c.messageId), f64(3, c.ts)])],
    [
      'a length prefix of 4 GiB',
      MALFORMED,
      (c) => Buffer.concat([head(c), tag(5, 2), varint(0xffffffff), Buffer.from('x')]),
    ],
    [
      'a length prefix of 2^63',
      MALFORMED,
      (c) => Buffer.concat([head(c), tag(5, 2), varint(2n ** 63n), Buffer.from('x')]),
    ],
    [
      'a length prefix one past the end',
      MALFORMED,
      (c) => Buffer.concat([head(c), tag(6, 2), varint(10), Buffer.from('123456789')]),
    ],
    [
      'a truncated varint',
      MALFORMED,
      (c) => Buffer.concat([ld(2, c.messageId), tag(3, 0), Buffer.from([0xff, 0xff])]),
    ],
    [
      'an 11-byte varint',
      MALFORMED,
      (c) => Buffer.concat([ld(2, c.messageId), tag(3, 0), Buffer.alloc(10, 0xff), Buffer.from([1])]),
    ],
    ['field number 0', MALFORMED, (c) => Buffer.concat([head(c), ld(0, 'x')])],
    ['wire type 6', MALFORMED, (c) => Buffer.concat([head(c), tag(9, 6)])],
    ['wire type 7', MALFORMED, (c) => Buffer.concat([head(c), tag(9, 7)])],
    [
      '5,000 nested groups',
      MALFORMED,
      (c) =>
        Buffer.concat([
          head(c),
          Buffer.concat(Array.from({ length: 5_000 }, () => tag(15, 3))),
          Buffer.concat(Array.from({ length: 5_000 }, () => tag(15, 4))),
        ]),
    ],
    ['an end-group without a start', MALFORMED, (c) => Buffer.concat([head(c), tag(15, 4)])],
    ['a start-group never closed', MALFORMED, (c) => Buffer.concat([head(c), tag(15, 3), vi(1, 1)])],
    [
      'invalid UTF-8 in message_id',
      MALFORMED,
      (c) =>
        Buffer.concat([
          ld(2, Buffer.concat([Buffer.from(c.messageId), Buffer.from([0xc0, 0xaf])])),
          vi(3, c.ts),
        ]),
    ],
    [
      'invalid UTF-8 in a text value',
      MALFORMED,
      (c) => Buffer.concat([head(c), metricEntry('t', ld(3, Buffer.from([0xed, 0xa0, 0x80])))]),
    ],
    [
      'invalid UTF-8 in a metric name',
      MALFORMED,
      (c) => Buffer.concat([head(c), metricEntry(Buffer.from([0x74, 0xff]), f64(1, 1))]),
    ],
    ['a NaN number', INVALID, (c) => Buffer.concat([head(c), metricEntry('t', f64(1, Number.NaN))])],
    ['+Infinity', INVALID, (c) => Buffer.concat([head(c), metricEntry('t', f64(1, Infinity))])],
    [
      '-Infinity beside a good metric: the whole message',
      INVALID,
      (c) => Buffer.concat([head(c), metricEntry('ok', f64(1, 1)), metricEntry('t', f64(1, -Infinity))]),
    ],
    ['a metric without a value', INVALID, (c) => Buffer.concat([head(c), metricEntry('t')])],
    ['a metric with an empty name', INVALID, (c) => Buffer.concat([head(c), metricEntry('', f64(1, 1))])],
    ['a metric entry without a name', INVALID, (c) => Buffer.concat([head(c), ld(5, ld(2, f64(1, 1)))])],
    [
      'ts = -1 (int64)',
      INVALID,
      (c) => Buffer.concat([ld(2, c.messageId), vi(3, -1), metricEntry('t', f64(1, 1))]),
    ],
    [
      'ts = 2^62',
      INVALID,
      (c) => Buffer.concat([ld(2, c.messageId), vi(3, 2n ** 62n), metricEntry('t', f64(1, 1))]),
    ],
    [
      'seq = 2^64 - 1',
      INVALID,
      (c) => Buffer.concat([head(c), vi(4, 2n ** 64n - 1n), metricEntry('t', f64(1, 1))]),
    ],
    [
      'a 129-character traceparent',
      INVALID,
      (c) => Buffer.concat([head(c), metricEntry('t', f64(1, 1)), ld(6, 'x'.repeat(129))]),
    ],
    [
      'a 65-character device_id',
      INVALID,
      (c) => Buffer.concat([ld(1, 'd'.repeat(65)), head(c), metricEntry('t', f64(1, 1))]),
    ],
    [
      'an injection as message_id',
      INVALID,
      (c) => Buffer.concat([ld(2, `${c.messageId}' OR 1=1 --`), vi(3, c.ts)]),
    ],
    ['random bytes', MALFORMED, (c) => Buffer.concat([Buffer.from([0x0f]), Buffer.from(c.messageId)])],
  ];
  for (const [name, expected, build] of cases) add(g, name, expected, (c) => protoOn(c, build(c)));
  add(g, 'unknown fields are skipped', stored, (c) =>
    protoOn(c, Buffer.concat([protoPayload(body(c)), ld(99, 'future field'), vi(100, 1)])),
  );
}

// ---- Unicode edge cases ------------------------------------------------------------------------------
{
  const g = 'unicode';
  const invalidUtf8: [string, number[]][] = [
    ['an overlong "/"', [0xc0, 0xaf]],
    ['a lone continuation byte', [0x80]],
    ['an encoded surrogate', [0xed, 0xa0, 0x80]],
    ['a 5-byte sequence', [0xf8, 0x88, 0x80, 0x80, 0x80]],
    ['a code point above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
    ['a truncated 3-byte sequence', [0xe2, 0x82]],
  ];
  for (const [what, bytes] of invalidUtf8)
    add(g, `${what} in a JSON text value`, MALFORMED, (c) =>
      jsonOn(
        c,
        Buffer.concat([
          Buffer.from(`{"messageId":"${c.messageId}","ts":${c.ts},"metrics":{"t":"`),
          Buffer.from(bytes),
          Buffer.from('"}}'),
        ]),
      ),
    );
  const refusedInIds: [string, string][] = [
    ['a lone surrogate escape', '\\ud800'],
    ['a non-ASCII letter', 'ü'],
    ['a fullwidth letter', 'Ａ'],
    ['a zero-width joiner', '\\u200d'],
  ];
  for (const [what, text] of refusedInIds) {
    add(g, `${what} in the message id`, INVALID, (c) =>
      jsonOn(c, `{"messageId":"${c.messageId}${text}","ts":${c.ts},"metrics":{"t":1}}`),
    );
    add(g, `${what} in a metric name`, INVALID, (c) =>
      jsonOn(c, `{"messageId":"${c.messageId}","ts":${c.ts},"metrics":{"t${text}":1}}`),
    );
  }
  add(g, 'a lone high surrogate escape in a text value', INVALID, (c) =>
    jsonOn(c, `{"messageId":"${c.messageId}","ts":${c.ts},"metrics":{"t":"a\\ud800b"}}`),
  );
  add(g, 'a lone low surrogate escape in a text value', INVALID, (c) =>
    jsonOn(c, `{"messageId":"${c.messageId}","ts":${c.ts},"metrics":{"t":"\\udc00"}}`),
  );
  const goodTexts: [string, string][] = [
    ['right-to-left override', 'שלום \u202eevil\u202c'],
    ['combining marks', 'e\u0301e\u0301'],
    ['a ZWJ family emoji', '👩‍👩‍👧‍👦'],
    ['zero-width characters', '\u200b\u200czero\u200d'],
    ['a NUL escape', 'a\u0000b'],
    ['control characters', 'tab\tnew\nline\u0007bell'],
    ['a U+FFFF noncharacter', '\uffff'],
    ['mathematical alphanumerics', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢'],
  ];
  for (const [what, text] of goodTexts)
    add(g, `${what} in a text value`, stored, (c) =>
      jsonOn(c, json(body(c, { metrics: { t: 1, note: text } }))),
    );
  add(g, 'a surrogate pair escape in a text value', stored, (c) =>
    jsonOn(c, `{"messageId":"${c.messageId}","ts":${c.ts},"metrics":{"t":"\\ud83d\\ude00"}}`),
  );
  add(g, 'a UTF-8 byte order mark before the JSON', stored, (c) =>
    jsonOn(c, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), json(body(c))])),
  );
}

// ---- MQTT 5 properties ---------------------------------------------------------------------------
{
  const g = 'MQTT 5 properties';
  const withProps = (
    c: BadInputContext,
    properties: NonNullable<IClientPublishOptions['properties']>,
  ): HostilePublish => ({ topic: on(c), payload: json(body(c)), properties });
  add(g, '1,000 user properties', stored, (c) =>
    withProps(c, {
      userProperties: Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`p${i}`, `v${i}`])),
    }),
  );
  add(g, 'one user property of 60 KiB', stored, (c) =>
    withProps(c, { userProperties: { big: 'x'.repeat(60 * 1024) } }),
  );
  add(g, 'a user property repeated 500 times', stored, (c) =>
    withProps(c, { userProperties: { dup: Array.from({ length: 500 }, (_, i) => String(i)) } }),
  );
  add(g, 'a garbage traceparent user property', stored, (c) =>
    withProps(c, { userProperties: { traceparent: 'not-a-trace-context' } }),
  );
  add(g, 'a 10 KiB traceparent user property', stored, (c) =>
    withProps(c, { userProperties: { traceparent: `00-${'a'.repeat(10_000)}` } }),
  );
  add(g, 'two traceparent user properties', stored, (c) =>
    withProps(c, {
      userProperties: {
        traceparent: [
          '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
          '00-00000000000000000000000000000000-0000000000000000-00',
        ],
      },
    }),
  );
  add(g, 'an all-zero trace id', stored, (c) =>
    withProps(c, {
      userProperties: { traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' },
    }),
  );
  add(g, 'a 5 KiB tracestate', stored, (c) =>
    withProps(c, { userProperties: { tracestate: `a=${'b'.repeat(5 * 1024)}` } }),
  );
  add(g, 'a response topic and correlation data', stored, (c) =>
    withProps(c, { responseTopic: `devices/${c.victim}/command`, correlationData: Buffer.from(c.messageId) }),
  );
  add(g, '60 KiB of correlation data', stored, (c) =>
    withProps(c, { correlationData: Buffer.alloc(60 * 1024, 7) }),
  );
  add(g, 'a message expiry interval', stored, (c) => withProps(c, { messageExpiryInterval: 60 }));
  add(g, 'payload format indicator "UTF-8" on valid JSON', stored, (c) =>
    withProps(c, { payloadFormatIndicator: true }),
  );
  add(g, 'payload format indicator "UTF-8" on invalid UTF-8', MALFORMED, (c) => ({
    topic: on(c),
    payload: Buffer.concat([Buffer.from([0xff]), json(body(c))]),
    properties: { payloadFormatIndicator: true },
  }));
  add(
    g,
    "user properties that take the packet over dmp-mqtt's Maximum Packet Size",
    { notDelivered: 'the broker acknowledges it and never sends it to dmp-mqtt' },
    (c) =>
      // An MQTT string is at most 65,535 bytes: many properties of 60 KiB each.
      withProps(c, {
        userProperties: Object.fromEntries(
          Array.from({ length: Math.ceil(c.maxPacketBytes / (60 * 1024)) + 1 }, (_, i) => [
            `big${i}`,
            'x'.repeat(60 * 1024),
          ]),
        ),
      }),
  );
  const malformedUtf8 = { notDelivered: 'the broker closes the connection (malformed UTF-8)' };
  add(g, 'a newline in a user property value', malformedUtf8, (c) => ({
    ...withProps(c, { userProperties: { traceparent: `00-x\n${c.messageId}` } }),
    ownConnection: true,
  }));
  add(g, 'U+0000 in a user property name', malformedUtf8, (c) => ({
    ...withProps(c, { userProperties: { 'a\u0000b': c.messageId } }),
    ownConnection: true,
  }));
  add(g, 'a wildcard in the response topic (Mosquitto 2.0 does not check it)', stored, (c) => ({
    ...withProps(c, { responseTopic: 'devices/#' }),
    ownConnection: true,
  }));
}

// ---- QoS and retain ------------------------------------------------------------------------------
{
  const g = 'QoS and retain';
  for (const qos of [0, 2] as const) {
    add(g, `QoS ${qos}, valid`, stored, (c) => ({ ...jsonOn(c, json(body(c))), qos }));
    add(g, `QoS ${qos}, invalid`, INVALID, (c) => ({ ...jsonOn(c, json(body(c, { ts: 'x' }))), qos }));
    add(g, `QoS ${qos}, malformed`, MALFORMED, (c) => ({ ...jsonOn(c, `{${c.messageId}`), qos }));
    add(g, `QoS ${qos}, unknown device`, edge(RejectCode.UnknownDevice), (c) => ({
      topic: `devices/${c.unknown}/event`,
      payload: json(body(c)),
      qos,
    }));
    add(
      g,
      `QoS ${qos}, heartbeat`,
      { notDelivered: 'heartbeats are counted, never stored or dead-lettered' },
      (c) => ({
        topic: on(c, 'heartbeat'),
        payload: json(body(c)),
        qos,
      }),
    );
  }
  // Retained on a device topic: stored once (a later subscriber would get it again: a duplicate). The
  // empty retained message that clears it reaches dmp-mqtt too, as an empty payload.
  add(g, 'retained, valid', stored, (c) => ({
    topic: on(c, 'snapshot'),
    payload: json(body(c)),
    retain: true,
  }));
  add(g, 'retained, invalid', INVALID, (c) => ({
    topic: on(c, 'event'),
    payload: json(body(c, { ts: -1 })),
    retain: true,
  }));
  add(g, 'an empty retained message (clears the retained one)', MALFORMED, (c) => ({
    topic: on(c, 'snapshot'),
    payload: Buffer.alloc(0),
    retain: true,
  }));
  add(g, 'an empty retained message on event (clears it)', MALFORMED, (c) => ({
    topic: on(c, 'event'),
    payload: Buffer.alloc(0),
    retain: true,
  }));
}

/** Every template, in a stable order. */
export const BAD_INPUT_TEMPLATES: readonly BadTemplate[] = templates;
