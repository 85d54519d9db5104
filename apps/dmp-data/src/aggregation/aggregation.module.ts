import { Module } from '@nestjs/common';
import { AggregationLease } from './aggregation-lease';
import { MinuteAggregator } from './aggregation.service';

/** `telemetry_1m`: per-minute aggregates recomputed from deduplicated raw data, by one instance at a time. */
@Module({ providers: [MinuteAggregator, AggregationLease], exports: [MinuteAggregator] })
export class AggregationModule {}
