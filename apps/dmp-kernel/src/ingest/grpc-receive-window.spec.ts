import { TELEMETRY_LOADER_OPTIONS, TELEMETRY_PROTO_PATH } from '@dmp/contracts';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import assert from 'node:assert/strict';
import type { ServerHttp2Session } from 'node:http2';
import { after, before, describe, it } from 'node:test';
import { raiseReceiveWindow } from './grpc-receive-window';

type IngestClient = grpc.Client & {
  Ingest(request: unknown, callback: (error: grpc.ServiceError | null) => void): void;
};

describe('raiseReceiveWindow', () => {
  const WINDOW = 8 * 1024 * 1024;
  const server = new grpc.Server();
  const loaded = grpc.loadPackageDefinition(
    protoLoader.loadSync(TELEMETRY_PROTO_PATH, TELEMETRY_LOADER_OPTIONS),
  ) as unknown as {
    dmp: {
      telemetry: {
        v1: { KernelIngest: grpc.ServiceClientConstructor & { service: grpc.ServiceDefinition } };
      };
    };
  };
  const { KernelIngest } = loaded.dmp.telemetry.v1;
  let client: IngestClient;

  before(async () => {
    server.addService(KernelIngest.service, {
      Ingest: (_call: unknown, done: grpc.sendUnaryData<unknown>) => done(null, { outcomes: [] }),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    assert.equal(raiseReceiveWindow(server, WINDOW), true);
    client = new KernelIngest(
      `127.0.0.1:${port}`,
      grpc.credentials.createInsecure(),
    ) as unknown as IngestClient;
  });

  after(() => {
    client.close();
    server.forceShutdown();
  });

  it('raises the window of the sessions accepted afterwards, per connection and per stream', async () => {
    // A request far larger than the 64 KiB default goes through.
    const messages = Array.from({ length: 2_000 }, (_, i) => ({
      deviceId: `d${i}`,
      messageId: 'x'.repeat(200),
    }));
    await new Promise<void>((resolve, reject) =>
      client.Ingest({ messages }, (error) => (error ? reject(error) : resolve())),
    );
    const sessions = [
      ...(server as unknown as { sessions: Map<ServerHttp2Session, unknown> }).sessions.keys(),
    ];
    assert.equal(sessions.length, 1);
    assert.ok(sessions[0].state.effectiveLocalWindowSize! >= WINDOW, JSON.stringify(sessions[0].state));
    assert.equal(sessions[0].localSettings.initialWindowSize, WINDOW);
  });

  it('says so when the grpc-js internals it relies on are missing', () => {
    assert.equal(raiseReceiveWindow({} as grpc.Server, WINDOW), false);
  });
});
