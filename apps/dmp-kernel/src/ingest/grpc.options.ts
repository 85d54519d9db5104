import { TELEMETRY_LOADER_OPTIONS, TELEMETRY_PROTO_PACKAGE, TELEMETRY_PROTO_PATH } from '@dmp/contracts';
import type { Server } from '@grpc/grpc-js';
import { Transport, type GrpcOptions } from '@nestjs/microservices';
import type { KernelConfig } from '../config';

/** How long the calls of a connection past its age may take to finish before it is closed. */
export const GRPC_CONNECTION_AGE_GRACE_MS = 30_000;

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
      // Clients reconnect now and then, and find kernels started since (KERNEL_GRPC_MAX_CONNECTION_AGE_MS).
      channelOptions:
        config.kernel.grpcMaxConnectionAgeMs > 0
          ? {
              'grpc.max_connection_age_ms': config.kernel.grpcMaxConnectionAgeMs,
              'grpc.max_connection_age_grace_ms': GRPC_CONNECTION_AGE_GRACE_MS,
            }
          : undefined,
      // On shutdown: refuse new calls, let in-flight Ingest calls (and their sends) finish.
      gracefulShutdown: true,
      onLoadPackageDefinition: (_definition: unknown, server: Server) => onServer?.(server),
    },
  };
}
