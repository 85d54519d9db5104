import { Controller } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import { IngestService } from './ingest.service';
import type { IngestBatch, IngestResult } from './telemetry.proto-types';

/** `dmp.telemetry.v1.KernelIngest`, called by dmp-mqtt. */
@Controller()
export class IngestController {
  constructor(private readonly ingestService: IngestService) {}

  /** Answers once every accepted message of the batch is stored in RocketMQ; one outcome per message. */
  @GrpcMethod('KernelIngest', 'Ingest')
  async ingest(batch: IngestBatch): Promise<IngestResult> {
    return { outcomes: await this.ingestService.ingest(batch.messages ?? []) };
  }
}
