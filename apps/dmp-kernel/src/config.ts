import {
  httpSection,
  int,
  kernelGrpcSection,
  loadConfig,
  rocketmqSection,
  telemetrySection,
} from '@dmp/config';
import { z } from 'zod';

/** dmp-kernel's own settings. */
const kernelSection = z
  .object({
    /** Snapshot sends in flight before further snapshots are shed (answered retryable). */
    KERNEL_SNAPSHOT_MAX_IN_FLIGHT: int(2000, 1),
    /** Largest gRPC message accepted or sent, in bytes (default 16 MiB). */
    KERNEL_GRPC_MAX_MESSAGE_BYTES: int(16 * 1024 * 1024, 1024),
  })
  .transform((e) => ({
    snapshotMaxInFlight: e.KERNEL_SNAPSHOT_MAX_IN_FLIGHT,
    grpcMaxMessageBytes: e.KERNEL_GRPC_MAX_MESSAGE_BYTES,
  }));

export function loadKernelConfig(env?: Record<string, string | undefined>) {
  return loadConfig(
    {
      http: httpSection(3002),
      telemetry: telemetrySection,
      grpc: kernelGrpcSection,
      rocketmq: rocketmqSection,
      kernel: kernelSection,
    },
    env,
  );
}

export type KernelConfig = ReturnType<typeof loadKernelConfig>;

/** Injection token of the validated configuration. */
export const KERNEL_CONFIG = Symbol('KERNEL_CONFIG');
