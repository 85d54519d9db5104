import { Module } from '@nestjs/common';
import { NormalizationModule } from '../normalization/normalization.module';
import { PublishingModule } from '../publishing/publishing.module';
import { IngestController } from './ingest.controller';
import { IngestService } from './ingest.service';

@Module({
  imports: [NormalizationModule, PublishingModule],
  controllers: [IngestController],
  providers: [IngestService],
})
export class IngestModule {}
