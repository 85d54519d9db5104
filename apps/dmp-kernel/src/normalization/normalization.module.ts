import { Module } from '@nestjs/common';
import { EnrichmentModule } from '../enrichment/enrichment.module';
import { Normalizer } from './normalizer';

@Module({ imports: [EnrichmentModule], providers: [Normalizer], exports: [Normalizer] })
export class NormalizationModule {}
