import { TELEMETRY_LOADER_OPTIONS, TELEMETRY_PROTO_PATH } from '@dmp/contracts';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadKernelConfig } from '../config';
import { kernelGrpcOptions } from './grpc.options';

type IngestClient = grpc.Client & {
  Ingest(request: unknown, callback: (error: grpc.ServiceError | null) => void): void;
};

describe('kernelGrpcOptions', () => {
  it('closes client connections past KERNEL_GRPC_MAX_CONNECTION_AGE_MS, so clients reconnect', async () => {
    const config = loadKernelConfig({ KERNEL_GRPC_MAX_CONNECTION_AGE_MS: '200' });
    // The server as Nest builds it: `new Server(channelOptions)` (plus the message size limits).
    const server = new grpc.Server(kernelGrpcOptions(config).options.channelOptions);
    const { KernelIngest } = (
      grpc.loadPackageDefinition(
        protoLoader.loadSync(TELEMETRY_PROTO_PATH, TELEMETRY_LOADER_OPTIONS),
      ) as unknown as {
        dmp: { telemetry: { v1: { KernelIngest: grpc.ServiceClientConstructor } } };
      }
    ).dmp.telemetry.v1;
    const peers = new Set<string>();
    server.addService(KernelIngest.service, {
      Ingest: (call: grpc.ServerUnaryCall<unknown, unknown>, done: grpc.sendUnaryData<unknown>) => {
        peers.add(call.getPeer()); // the client's address and port: a new port is a new connection
        done(null, { outcomes: [] });
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    const client = new KernelIngest(
      `127.0.0.1:${port}`,
      grpc.credentials.createInsecure(),
    ) as unknown as IngestClient;
    try {
      // Calls one after the other, every one answered, until a second connection carried one (bounded).
      const deadline = Date.now() + 10_000;
      let calls = 0;
      while (peers.size < 2 && Date.now() < deadline) {
        await new Promise<void>((resolve, reject) =>
          client.Ingest({ messages: [] }, (error) => (error ? reject(error) : resolve())),
        );
        calls++;
      }
      assert.ok(peers.size >= 2, `one connection carried all ${calls} calls over 10 s`);
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  it('keeps connections open with KERNEL_GRPC_MAX_CONNECTION_AGE_MS=0', () => {
    const config = loadKernelConfig({ KERNEL_GRPC_MAX_CONNECTION_AGE_MS: '0' });
    assert.equal(kernelGrpcOptions(config).options.channelOptions, undefined);
    assert.equal(
      kernelGrpcOptions(loadKernelConfig({})).options.channelOptions?.['grpc.max_connection_age_ms'],
      300_000,
    );
  });
});
