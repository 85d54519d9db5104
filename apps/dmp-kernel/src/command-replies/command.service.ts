import { CommandErrorCode, DmpError, type CommandRecord } from '@dmp/contracts';
import { extractTraceContext, MetricsRegistry, recordFailure } from '@dmp/observability';
import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import type { IPublishPacket } from 'mqtt';
import type { Counter } from 'prom-client';
import { CommandPublisher } from '../actions/command.publisher';
import { AlarmService } from '../alarms/alarm.service';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { parseCommandReply } from '../commands/command-reply';
import { CommandLedger, plannedFromRecord } from '../commands/command.ledger';

const tracer = trace.getTracer('dmp-kernel');

/**
 * The command ledger's inputs besides sending and expiry (AlarmService and AlarmScheduler do those):
 * device replies (the MQTT subscription of CommandPublisher's connection, shared by the replicas) and
 * an operator's resend (admin API). Each is one `CommandLedger.apply`; the
 * outbox entries it writes (the event, a resend's command) are dispatched at once.
 */
@Injectable()
export class CommandService implements OnApplicationBootstrap {
  private readonly log = new Logger('Commands');
  private readonly replies: Counter<'outcome'>;
  /** Replies being applied (awaited at shutdown, bounded). */
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly ledger: CommandLedger,
    private readonly publisher: CommandPublisher,
    private readonly alarms: AlarmService,
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
    metrics: MetricsRegistry,
  ) {
    this.replies = metrics.counter(
      'dmp_kernel_command_replies_total',
      'Device replies to commands, by outcome (applied | duplicate | late | unknown | invalid | error)',
      ['outcome'],
    );
  }

  onApplicationBootstrap(): void {
    if (!this.config.rules.enabled) return;
    this.publisher.onReply((topic, payload, packet) => {
      const running: Promise<void> = this.reply(topic, payload, packet).finally(() =>
        this.running.delete(running),
      );
      this.running.add(running);
    });
  }

  async drain(timeoutMs = 5_000): Promise<void> {
    if (this.running.size === 0) return;
    await Promise.race([
      Promise.allSettled([...this.running]),
      new Promise((resolve) => setTimeout(resolve, timeoutMs).unref()),
    ]);
  }

  get(commandId: string): Promise<CommandRecord | undefined> {
    return this.ledger.get(commandId);
  }

  listDevice(deviceId: string, limit?: number): Promise<CommandRecord[]> {
    return this.ledger.listDevice(deviceId, limit);
  }

  /** Applies one device reply. Never throws: what cannot be applied is counted and logged with its code. */
  async reply(topic: string, payload: Buffer, packet: IPublishPacket): Promise<void> {
    const parsed = parseCommandReply(topic, payload, packet.properties?.correlationData);
    if (!parsed.ok) {
      this.replies.inc({ outcome: 'invalid' });
      this.log.warn(
        `${CommandErrorCode.InvalidReply}: reply of ${parsed.deviceId ?? '?'} on ${topic} ignored: ${parsed.problem}`,
      );
      return;
    }
    const { deviceId, commandId, reply } = parsed;
    const record = await this.ledger.get(commandId).catch(() => undefined);
    if (!record || record.deviceId !== deviceId) {
      this.replies.inc({ outcome: 'unknown' });
      this.log.warn(
        `${CommandErrorCode.InvalidReply}: reply of ${deviceId} names no command of it: ${commandId}`,
      );
      return;
    }
    // The reply continues the command's trace: the device's echoed traceparent, else the send span's.
    const userProperties = packet.properties?.userProperties ?? {};
    const echoed =
      typeof userProperties.traceparent === 'string' ? userProperties.traceparent : reply.traceparent;
    const parent = extractTraceContext({ traceparent: echoed || record.traceparent }, ROOT_CONTEXT);
    const span = tracer.startSpan(
      'process devices/+/command/reply',
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          'messaging.system': 'mqtt',
          'network.protocol.name': 'mqtt',
          'messaging.operation.type': 'process',
          'messaging.destination.name': topic,
          'messaging.destination.template': 'devices/+/command/reply',
          'messaging.message.conversation_id': commandId,
          'dmp.device.id': deviceId,
          'dmp.rule.id': record.ruleId,
          'dmp.command.status': reply.status,
        },
      },
      parent,
    );
    try {
      const result = await this.ledger.apply(commandId, {
        kind: 'reply',
        status: reply.status,
        code: reply.code,
        message: reply.message,
        result: reply.result,
        now: Date.now(),
      });
      this.alarms.dispatch(result.entries);
      const outcome =
        result.decision.kind === 'apply'
          ? result.decision.event.transition === 'late_reply'
            ? 'late'
            : 'applied'
          : 'duplicate';
      span.setAttribute('dmp.command.outcome', outcome);
      this.replies.inc({ outcome });
    } catch (error) {
      this.replies.inc({ outcome: 'error' });
      recordFailure(span, error);
      this.log.warn(`reply of ${deviceId} to ${commandId} not applied: ${(error as Error).message}`);
    } finally {
      span.end();
    }
  }

  /**
   * An operator sends a failed or expired command again: same id (the device deduplicates), a new time
   * to live, at most KERNEL_COMMAND_MAX_RESENDS times. The record and the command's outbox entry are
   * written in one step; the outbox then sends it like any other.
   */
  async resend(commandId: string): Promise<CommandRecord> {
    const result = await this.ledger.apply(
      commandId,
      { kind: 'resend', maxResends: this.config.rules.commands.maxResends, now: Date.now() },
      (record) => [
        { id: `cmd:${commandId}:r${record.resends}`, kind: 'command', command: plannedFromRecord(record) },
      ],
    );
    const { decision } = result;
    if (decision.kind === 'refuse' && decision.reason === 'no such command')
      throw new DmpError(CommandErrorCode.NotFound, `no command ${commandId}`, false);
    if (decision.kind !== 'apply')
      throw new DmpError(
        CommandErrorCode.NotResendable,
        `command ${commandId} not resent: ${decision.kind === 'refuse' ? decision.reason : decision.reason}`,
        false,
      );
    this.alarms.dispatch(result.entries);
    return decision.record;
  }
}
