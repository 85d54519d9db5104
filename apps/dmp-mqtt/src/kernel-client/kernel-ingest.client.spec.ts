import {
  TELEMETRY_LOADER_OPTIONS,
  TELEMETRY_PROTO_PATH,
  type TelemetryEnvelope,
  type TelemetryMessage,
} from '@dmp/contracts';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeIngestBatch, encodeTelemetry, KernelIngestClient } from './kernel-ingest.client';

/** What dmp-kernel's gRPC server (proto-loader, the same options) decodes from the request bytes. */
const definition = protoLoader.loadSync(TELEMETRY_PROTO_PATH, TELEMETRY_LOADER_OPTIONS);
const ingest = (definition['dmp.telemetry.v1.KernelIngest'] as protoLoader.ServiceDefinition).Ingest;
const decodeBatch = (bytes: Buffer) => ingest.requestDeserialize(bytes) as { messages: TelemetryMessage[] };

const envelope = (overrides: Partial<TelemetryEnvelope> = {}): TelemetryEnvelope => ({
  deviceId: 'dev-1',
  messageId: 'm-1',
  kind: 'snapshot',
  ts: 1_764_000_000_123,
  seq: 42,
  metrics: { temp: 21.5, on: true, mode: 'eco', zero: 0 },
  receivedAt: 1_764_000_000_456,
  ...overrides,
});

describe('encodeTelemetry / encodeIngestBatch', () => {
  it('encodes what the kernel decodes as the same message, every metric type, kind and trace context', () => {
    const carrier = { traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`, tracestate: 'k=v' };
    const encoded = encodeTelemetry(envelope(), carrier);
    assert.deepEqual(
      { messageId: encoded.messageId, traceparent: encoded.traceparent, tracestate: encoded.tracestate },
      { messageId: 'm-1', ...carrier },
    );
    const { messages } = decodeBatch(encodeIngestBatch({ messages: [encoded] }));
    assert.deepEqual(messages, [
      {
        deviceId: 'dev-1',
        messageId: 'm-1',
        kind: 'KIND_SNAPSHOT',
        ts: 1_764_000_000_123,
        seq: 42,
        metrics: {
          temp: { number: 21.5, value: 'number' },
          on: { flag: true, value: 'flag' },
          mode: { text: 'eco', value: 'text' },
          zero: { number: 0, value: 'number' },
        },
        receivedAt: 1_764_000_000_456,
        traceparent: carrier.traceparent,
        tracestate: 'k=v',
      },
    ]);
  });

  it('frames many messages in order, without trace context or seq as empty and 0', () => {
    const batch = (['telemetry', 'event', 'snapshot'] as const).map((kind, i) =>
      encodeTelemetry(envelope({ kind, messageId: `m-${i}`, seq: undefined }), {}),
    );
    const { messages } = decodeBatch(encodeIngestBatch({ messages: batch }));
    assert.deepEqual(
      messages.map((m) => [m.messageId, m.kind, m.seq, m.traceparent, m.tracestate]),
      [
        ['m-0', 'KIND_TELEMETRY', 0, '', ''],
        ['m-1', 'KIND_EVENT', 0, '', ''],
        ['m-2', 'KIND_SNAPSHOT', 0, '', ''],
      ],
    );
    assert.deepEqual(decodeBatch(encodeIngestBatch({ messages: [] })).messages, []);
  });
});

/** A KernelIngest server on a loopback port that counts the calls it answers (every message accepted). */
async function countingKernel(): Promise<{ port: number; calls: () => number; stop: () => void }> {
  const server = new grpc.Server();
  let calls = 0;
  server.addService(definition['dmp.telemetry.v1.KernelIngest'] as grpc.ServiceDefinition, {
    Ingest: (
      call: grpc.ServerUnaryCall<{ messages: TelemetryMessage[] }, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      calls++;
      callback(null, { outcomes: call.request.messages.map(() => ({ result: 'RESULT_ACCEPTED' })) });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  return { port, calls: () => calls, stop: () => server.forceShutdown() };
}

describe('KernelIngestClient', () => {
  it('spreads its calls over every address the target resolves to (a headless Service)', async () => {
    const kernels = await Promise.all([countingKernel(), countingKernel(), countingKernel()]);
    // One name, several addresses: what DNS answers for a headless Service with three ready pods.
    const client = new KernelIngestClient(
      `ipv4:${kernels.map((k) => `127.0.0.1:${k.port}`).join(',')}`,
      5_000,
    );
    try {
      const message = encodeTelemetry(envelope(), {});
      // Calls go in turn to the addresses connected so far: call until all three are (bounded).
      for (let i = 0; i < 300 && kernels.some((k) => k.calls() === 0); i++) await client.ingest([message]);
      assert.deepEqual(
        kernels.map((k) => k.calls() > 0),
        [true, true, true],
        `every kernel gets calls, not the first one all: ${kernels.map((k) => k.calls()).join(', ')}`,
      );
      // Then strictly in turn.
      const before = kernels.map((k) => k.calls());
      for (let i = 0; i < 30; i++) assert.equal((await client.ingest([message])).length, 1);
      assert.deepEqual(
        kernels.map((k, n) => k.calls() - before[n]),
        [10, 10, 10],
      );
    } finally {
      client.close();
      for (const k of kernels) k.stop();
    }
  });
});
