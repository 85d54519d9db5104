import { TELEMETRY_PROTO_PACKAGE, TELEMETRY_PROTO_PATH } from '@dmp/contracts';
import type { Server } from '@grpc/grpc-js';
import { Transport, type GrpcOptions } from '@nestjs/microservices';
import type { KernelConfig } from '../config';

/** proto-loader options the Ingest types (`telemetry.proto-types.ts`) rely on; clients use the same. */
export const TELEMETRY_LOADER_OPTIONS = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
} as const;

/** `onServer` receives the grpc-js server (Nest's microservice does not expose it otherwise). */
export function kernelGrpcOptions(config: KernelConfig, onServer?: (server: Server) => void): GrpcOptions {
  return {
    transport: Transport.GRPC,
    options: {
      url: config.grpc.url,
      package: TELEMETRY_PROTO_PACKAGE,
      protoPath: TELEMETRY_PROTO_PATH,
      loader: TELEMETRY_LOADER_OPTIONS,
      maxReceiveMessageLength: config.kernel.grpcMaxMessageBytes,
      maxSendMessageLength: config.kernel.grpcMaxMessageBytes,
      // On shutdown: refuse new calls, let in-flight Ingest calls (and their sends) finish.
      gracefulShutdown: true,
      onLoadPackageDefinition: (_definition: unknown, server: Server) => onServer?.(server),
    },
  };
}
