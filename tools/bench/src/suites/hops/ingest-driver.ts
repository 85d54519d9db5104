import {
  TELEMETRY_LOADER_OPTIONS,
  TELEMETRY_PROTO_PATH,
  type IngestOutcome,
  type KernelIngestStub,
  type TelemetryGrpcPackage,
  type TelemetryRequest,
} from '@dmp/contracts';
import { backoffDelay } from '@dmp/flow';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { SimulatedDevice } from '../../../../simulator/src/device-model';
import { seededRandom } from '../../suite';
import { fleetMix } from '../chain/analysis';

/**
 * Calls dmp-kernel's Ingest as dmp-mqtt does — its defaults: up to 500 messages a call, 8 calls in
 * flight, the next call as soon as one is answered — with the simulator's devices and mix (change events
 * and 5-minute snapshots of 100,000 devices), each message with an unsampled `traceparent` as dmp-mqtt
 * propagates it. A message answered retryable is sent again, after the project's backoff when a whole
 * call failed. At most `concurrency × batch` messages wait for RocketMQ: the kernel's rate, not a queue.
 */
export interface IngestRunStats {
  accepted: number;
  /** Answered not accepted and not retryable (none expected: every message is well-formed). */
  refused: number;
  /** Messages sent again after a retryable answer or a failed call. */
  retried: number;
  /** The retryable answers by error code (e.g. DMP_ERR_SHED_SNAPSHOT while too many snapshots wait). */
  retryableCodes: Record<string, number>;
  calls: number;
  failedCalls: number;
  seconds: number;
}

const RETRY = { baseMs: 100, maxMs: 2_000, jitter: 0.2 };

export class IngestDriver {
  private readonly client: KernelIngestStub;
  private readonly devices: SimulatedDevice[];
  private readonly random = seededRandom(11);
  private readonly snapshotShare: number;
  private readonly batch: number;
  private readonly concurrency: number;

  constructor(
    url: string,
    {
      devices,
      deviceIdPrefix,
      batch = 500,
      concurrency = 8,
    }: { devices: number; deviceIdPrefix: string; batch?: number; concurrency?: number },
  ) {
    const loaded = grpc.loadPackageDefinition(
      loadSync(TELEMETRY_PROTO_PATH, TELEMETRY_LOADER_OPTIONS),
    ) as unknown as TelemetryGrpcPackage;
    this.client = new loaded.dmp.telemetry.v1.KernelIngest(url, grpc.credentials.createInsecure());
    this.devices = Array.from(
      { length: devices },
      (_, i) => new SimulatedDevice(`${deviceIdPrefix}-${i}`, this.random),
    );
    this.snapshotShare = fleetMix(1_000, devices).snapshotsPerSecond / 1_000;
    this.batch = batch;
    this.concurrency = concurrency;
  }

  private next(): TelemetryRequest {
    const device = this.devices[Math.floor(this.random() * this.devices.length)];
    const now = Date.now();
    const reading = this.random() < this.snapshotShare ? device.snapshot(now) : device.change(now);
    const metrics: TelemetryRequest['metrics'] = {};
    for (const [name, value] of Object.entries(reading.metrics))
      metrics[name] =
        typeof value === 'number'
          ? { number: value }
          : typeof value === 'boolean'
            ? { flag: value }
            : { text: value };
    return {
      deviceId: reading.deviceId,
      messageId: reading.messageId,
      kind: reading.channel === 'snapshot' ? 'KIND_SNAPSHOT' : 'KIND_TELEMETRY',
      ts: reading.ts,
      seq: reading.seq,
      metrics,
      receivedAt: now,
      traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-00`,
    };
  }

  private call(messages: TelemetryRequest[]): Promise<IngestOutcome[]> {
    return new Promise((resolve, reject) =>
      this.client.Ingest({ messages }, { deadline: Date.now() + 30_000 }, (error, result) =>
        error ? reject(error) : resolve(result?.outcomes ?? []),
      ),
    );
  }

  /** Sends `count` messages (new ones, from the fleet) and resolves once the kernel took them all. */
  async run(count: number, onProgress?: (accepted: number) => void): Promise<IngestRunStats> {
    const stats: IngestRunStats = {
      accepted: 0,
      refused: 0,
      retried: 0,
      retryableCodes: {},
      calls: 0,
      failedCalls: 0,
      seconds: 0,
    };
    const again: TelemetryRequest[] = [];
    let generated = 0;
    const started = performance.now();
    const worker = async () => {
      let failures = 0;
      for (;;) {
        const messages = again.splice(0, this.batch);
        while (messages.length < this.batch && generated < count) {
          messages.push(this.next());
          generated++;
        }
        if (messages.length === 0) return;
        stats.calls++;
        let outcomes: IngestOutcome[];
        try {
          outcomes = await this.call(messages);
          failures = 0;
        } catch {
          stats.failedCalls++;
          stats.retried += messages.length;
          again.push(...messages);
          await sleep(backoffDelay(++failures, RETRY));
          continue;
        }
        const byId = new Map(outcomes.map((o) => [o.messageId, o]));
        for (const message of messages) {
          const outcome = byId.get(message.messageId);
          if (outcome?.accepted) stats.accepted++;
          else if (outcome && !outcome.retryable) stats.refused++;
          else {
            stats.retried++;
            const code = outcome?.errorCode || 'no outcome';
            stats.retryableCodes[code] = (stats.retryableCodes[code] ?? 0) + 1;
            again.push(message);
          }
        }
        onProgress?.(stats.accepted);
      }
    };
    // A worker that finds nothing to send ends; one whose call failed puts its messages back first.
    while (stats.accepted + stats.refused < count) {
      await Promise.all(Array.from({ length: this.concurrency }, worker));
      if (again.length === 0 && generated >= count) break;
    }
    stats.seconds = (performance.now() - started) / 1000;
    return stats;
  }

  close(): void {
    this.client.close();
  }
}
