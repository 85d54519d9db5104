import { Module } from '@nestjs/common';
import { DeadLetterModule } from '../dead-letter/dead-letter.module';
import { DedupModule } from '../dedup/dedup.module';
import { DevicesModule } from '../devices/devices.module';
import { KernelClientModule } from '../kernel-client/kernel-client.module';
import { IngestController } from './ingest.controller';
import { IngestMetrics } from './ingest.metrics';
import { IngestService } from './ingest.service';
import { MessageTracing } from './message-tracing';

@Module({
  imports: [KernelClientModule, DevicesModule, DedupModule, DeadLetterModule],
  controllers: [IngestController],
  providers: [IngestService, IngestMetrics, MessageTracing],
})
export class IngestModule {}
