import { Module } from '@nestjs/common';
import { RetentionService } from './retention.service';
import { TelemetryBatchWriter } from './telemetry-batch-writer';

/** The batching ClickHouse writer and retention (ClickHouseRepository comes from the app's ClickHouseModule). */
@Module({ providers: [TelemetryBatchWriter, RetentionService], exports: [TelemetryBatchWriter] })
export class StorageModule {}
