import { Module } from '@nestjs/common';
import { KernelClientModule } from '../kernel-client/kernel-client.module';
import { IngestController } from './ingest.controller';
import { IngestMetrics } from './ingest.metrics';
import { IngestService } from './ingest.service';
import { MessageTracing } from './message-tracing';

@Module({
  imports: [KernelClientModule],
  controllers: [IngestController],
  providers: [IngestService, IngestMetrics, MessageTracing],
})
export class IngestModule {}
