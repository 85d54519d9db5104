import { ClickHouseModule } from '@dmp/clickhouse';
import { ObservabilityModule, type Telemetry } from '@dmp/observability';
import { RedisModule } from '@dmp/redis';
import { Global, Module, type DynamicModule } from '@nestjs/common';
import { DATA_CONFIG, type DataConfig } from './config';
import { AggregationModule } from './aggregation/aggregation.module';
import { AlarmsModule } from './alarms/alarms.module';
import { CommandsModule } from './commands/commands.module';
import { DeadLettersModule } from './dead-letters/dead-letters.module';
import { ConsumerModule } from './consumer/consumer.module';

/** dmp-data: RocketMQ telemetry → ClickHouse (`telemetry_raw`, `telemetry_latest`, `telemetry_1m`). */
@Global()
@Module({})
export class AppModule {
  static forRoot(config: DataConfig, telemetry: Telemetry): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ObservabilityModule.forRoot({
          serviceName: 'dmp-data',
          logLevel: config.telemetry.logLevel,
          telemetry,
        }),
        ClickHouseModule.forRoot({
          connection: config.clickhouse,
          migrate: true,
          startupTimeoutMs: config.data.startupTimeoutMs,
        }),
        // Only for the aggregation lease: dmp-data stores and stays healthy without Redis.
        RedisModule.forRoot({ url: config.redis.url, required: false }),
        ConsumerModule.forRoot(config),
        AggregationModule,
        AlarmsModule.forRoot({ rocketmq: config.rocketmq, alarms: config.alarms }),
        CommandsModule.forRoot({ rocketmq: config.rocketmq, commands: config.commands }),
        DeadLettersModule.forRoot(config),
      ],
      providers: [{ provide: DATA_CONFIG, useValue: config }],
      exports: [DATA_CONFIG],
    };
  }
}
