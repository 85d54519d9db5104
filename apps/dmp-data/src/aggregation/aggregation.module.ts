import { Module } from '@nestjs/common';
import { MinuteAggregator } from './aggregation.service';

/** `telemetry_1m`: per-minute aggregates recomputed from deduplicated raw data. */
@Module({ providers: [MinuteAggregator], exports: [MinuteAggregator] })
export class AggregationModule {}
