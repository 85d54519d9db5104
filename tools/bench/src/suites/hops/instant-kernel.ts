import {
  TELEMETRY_LOADER_OPTIONS,
  TELEMETRY_PROTO_PATH,
  type IngestBatch,
  type IngestResult,
  type TelemetryGrpcPackage,
} from '@dmp/contracts';
import { freePort } from '@dmp/testing';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { performance } from 'node:perf_hooks';

/**
 * dmp-kernel's `KernelIngest` service answering at once: every message accepted, nothing stored. What
 * dmp-mqtt hands off is counted, so its hop is measured without the kernel and RocketMQ behind it.
 * Runs in the bench process (its CPU, decoding the calls, is the bench's).
 */
export class InstantKernel {
  accepted = 0;
  calls = 0;
  /** performance.now() of the last call answered. */
  lastAt = 0;
  private server?: grpc.Server;

  private constructor(readonly url: string) {}

  static async start(): Promise<InstantKernel> {
    const kernel = new InstantKernel(`127.0.0.1:${await freePort()}`);
    const loaded = grpc.loadPackageDefinition(
      loadSync(TELEMETRY_PROTO_PATH, TELEMETRY_LOADER_OPTIONS),
    ) as unknown as TelemetryGrpcPackage;
    // grpc-js' default windows (64 KiB; dmp-kernel raises its own): the bench's event loop answers at
    // once, so a call waits little for its WINDOW_UPDATEs once the publisher is done.
    const server = new grpc.Server();
    server.addService(loaded.dmp.telemetry.v1.KernelIngest.service, {
      Ingest: (
        call: grpc.ServerUnaryCall<IngestBatch, IngestResult>,
        callback: grpc.sendUnaryData<IngestResult>,
      ) => {
        const { messages } = call.request;
        kernel.accepted += messages.length;
        kernel.calls++;
        kernel.lastAt = performance.now();
        callback(null, {
          outcomes: messages.map((m) => ({
            messageId: m.messageId,
            accepted: true,
            retryable: false,
            errorCode: '',
            errorMessage: '',
          })),
        });
      },
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(kernel.url, grpc.ServerCredentials.createInsecure(), (error) =>
        error ? reject(error) : resolve(),
      ),
    );
    kernel.server = server;
    return kernel;
  }

  stop(): void {
    this.server?.forceShutdown();
  }
}
