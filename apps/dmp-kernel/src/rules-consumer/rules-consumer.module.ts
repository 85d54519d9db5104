import { RocketMqConsumerServer, RocketMqProducer } from '@dmp/messaging';
import { HealthRegistry, MetricsRegistry } from '@dmp/observability';
import {
  Inject,
  Injectable,
  Logger,
  Module,
  Optional,
  type BeforeApplicationShutdown,
  type DynamicModule,
  type OnModuleInit,
} from '@nestjs/common';
import { CommandPublisher } from '../actions/command.publisher';
import {
  AlarmEventPublisher,
  CommandEventPublisher,
  OutboxDeadLetterPublisher,
  RoutePublisher,
} from '../actions/rocketmq.publishers';
import { WebhookDispatcher } from '../actions/webhook.dispatcher';
import { AlarmScheduler } from '../alarms/alarm.scheduler';
import { AlarmService } from '../alarms/alarm.service';
import { AlarmStore } from '../alarms/alarm.store';
import { CommandLedger } from '../commands/command.ledger';
import { CommandService } from '../command-replies/command.service';
import { CommandStore } from '../commands/command.store';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { EnrichmentModule } from '../enrichment/enrichment.module';
import { PublishingModule } from '../publishing/publishing.module';
import { DeviceStateStore } from '../state/device-state.store';
import { RuleProcessor } from './rule-processor.service';
import { RULES_CONSUMER, rulesConsumerController } from './rules-consumer';

/**
 * Shutdown order: stop taking telemetry and let evaluations in flight finish (they need Redis, RocketMQ,
 * MQTT — all closed later, in onApplicationShutdown), stop the timer, then let dispatched outbox entries
 * (commands, webhooks) finish, bounded — what does not finish stays in the outbox for the next kernel.
 */
@Injectable()
class RulesConsumerLifecycle implements OnModuleInit, BeforeApplicationShutdown {
  private readonly log = new Logger('Evaluation');

  constructor(
    private readonly scheduler: AlarmScheduler,
    private readonly alarms: AlarmService,
    private readonly webhooks: WebhookDispatcher,
    private readonly commands: CommandPublisher,
    private readonly commandReplies: CommandService,
    private readonly health: HealthRegistry,
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
    @Optional() @Inject(RULES_CONSUMER) private readonly server?: RocketMqConsumerServer,
  ) {}

  onModuleInit(): void {
    const server = this.server;
    if (server)
      this.health.register('rules', () => ({
        up: server.isReady(),
        detail: {
          group: this.config.rules.group,
          inFlight: server.inFlight,
          commandsBroker: this.commands.isConnected() ? 'connected' : 'disconnected',
        },
      }));
  }

  async beforeApplicationShutdown(): Promise<void> {
    if (this.server) {
      this.log.log(`stopping rule evaluation: ${this.server.inFlight} message(s) in flight`);
      await this.server.close();
    }
    await this.scheduler.stop();
    await this.commandReplies.drain();
    await this.alarms.drain();
    await this.webhooks.drain();
  }
}

/**
 * The rules consumer: the kernel reads back its own telemetry topics (group KERNEL_RULES_GROUP) and runs
 * the rules on what RocketMQ stored → alarms (and their timer) → actions. Exports AlarmService for the
 * admin API (AdminModule).
 */
@Module({})
export class RulesConsumerModule {
  static forRoot(config: KernelConfig): DynamicModule {
    const topics = [config.rocketmq.topics.event, config.rocketmq.topics.snapshot];
    const consumer = config.rules.enabled
      ? [
          {
            provide: RULES_CONSUMER,
            inject: [MetricsRegistry, RocketMqProducer],
            useFactory: (metrics: MetricsRegistry, producer: RocketMqProducer) =>
              new RocketMqConsumerServer({
                endpoints: config.rocketmq.endpoints,
                namespace: config.rocketmq.namespace,
                group: config.rules.group,
                topics,
                pollers: config.rules.pollers,
                maxInFlight: config.rules.maxInFlight,
                maxDeliveryAttempts: config.rules.maxDeliveryAttempts,
                deadLetterTopic: config.rocketmq.topics.deadLetter,
                producer,
                metrics,
                logger: new Logger(`RocketMqConsumer(${config.rules.group})`),
              }),
          },
        ]
      : [];
    return {
      module: RulesConsumerModule,
      imports: [PublishingModule, EnrichmentModule],
      controllers: config.rules.enabled ? [rulesConsumerController(topics)] : [],
      providers: [
        DeviceStateStore,
        AlarmStore,
        AlarmService,
        AlarmScheduler,
        CommandPublisher,
        CommandStore,
        CommandLedger,
        CommandService,
        CommandEventPublisher,
        WebhookDispatcher,
        AlarmEventPublisher,
        OutboxDeadLetterPublisher,
        RoutePublisher,
        RuleProcessor,
        RulesConsumerLifecycle,
        ...consumer,
      ],
      exports: [AlarmService, CommandService, ...(consumer.length ? [RULES_CONSUMER] : [])],
    };
  }
}
