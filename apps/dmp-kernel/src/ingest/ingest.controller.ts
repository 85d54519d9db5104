import { type IngestBatch, type IngestResult } from '@dmp/contracts';
import { status, type Metadata, type ServerUnaryCall } from '@grpc/grpc-js';
import { Controller } from '@nestjs/common';
import { GrpcMethod, RpcException } from '@nestjs/microservices';
import { callSignal } from './call-signal';
import { IngestService, LaneFullError } from './ingest.service';

/** `dmp.telemetry.v1.KernelIngest`, called by dmp-mqtt. */
@Controller()
export class IngestController {
  constructor(private readonly ingestService: IngestService) {}

  /**
   * Answers once every accepted message of the batch is stored in RocketMQ; one outcome per message.
   * A call refused because a lane is full answers RESOURCE_EXHAUSTED, its details starting with
   * `DMP_ERR_LANE_FULL:` — nothing of it was taken, the caller retries it.
   */
  @GrpcMethod('KernelIngest', 'Ingest')
  async ingest(
    batch: IngestBatch,
    _metadata: Metadata,
    call: ServerUnaryCall<IngestBatch, IngestResult>,
  ): Promise<IngestResult> {
    const { signal, done } = callSignal(call);
    try {
      return { outcomes: await this.ingestService.ingest(batch.messages ?? [], signal) };
    } catch (error) {
      if (error instanceof LaneFullError)
        throw new RpcException({
          code: status.RESOURCE_EXHAUSTED,
          message: `${error.code}: ${error.message}`,
        });
      throw error;
    } finally {
      done();
    }
  }
}
