import { deviceCommandReplyTopic, deviceCommandTopic, DmpError, OutboxErrorCode } from '@dmp/contracts';
import { injectTraceContext, MetricsRegistry, mqttTraceProperties, recordFailure } from '@dmp/observability';
import { messageExpirySeconds, type PlannedCommand } from '@dmp/rules';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { context, SpanKind, trace } from '@opentelemetry/api';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import type { Counter, Gauge } from 'prom-client';
import { KERNEL_CONFIG, type KernelConfig } from '../config';

/** What a device receives on `devices/{deviceId}/command` (JSON). */
export interface DeviceCommand {
  commandId: string;
  ruleId: string;
  name: string;
  params: unknown;
  ts: number;
  /** Epoch ms after which the command is stale: a device (MQTT 3.1.1 has no message expiry) ignores it then. */
  expiresAt: number;
  /** Where to answer (also the MQTT 5 response topic). */
  replyTopic: string;
}

const tracer = trace.getTracer('dmp-kernel');

/**
 * Linkage commands to devices over MQTT 5: QoS 1 on `devices/{deviceId}/command`, JSON payload, the
 * trace context in the user properties `traceparent` / `tracestate`. `send` resolves once the broker
 * acknowledged (PUBACK) — the broker then delivers it to the device's subscription (or keeps it in the
 * device's persistent session). `commandId` is stable per cause: a resend is recognizable by the device.
 */
@Injectable()
export class CommandPublisher implements OnModuleInit, OnApplicationShutdown {
  private readonly log = new Logger('Commands');
  private client?: MqttClient;
  private readonly sent: Counter<'result'>;
  private readonly connected: Gauge;

  constructor(
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
    metrics: MetricsRegistry,
  ) {
    this.connected = metrics.gauge(
      'dmp_kernel_mqtt_connected',
      '1 while the linkage command connection is up',
    );
    this.sent = metrics.counter(
      'dmp_kernel_commands_total',
      'Linkage commands sent to devices, by result (ok | error)',
      ['result'],
    );
  }

  async onModuleInit(): Promise<void> {
    const { mqtt: broker, rules } = this.config;
    const client = mqtt.connect(broker.url, {
      protocolVersion: 5,
      clientId: rules.mqttClientId,
      clean: true,
      username: broker.username,
      password: broker.password,
      reconnectPeriod: 1_000,
      connectTimeout: 10_000,
      keepalive: 30,
    });
    this.client = client;
    let lastError = '';
    client.on('error', (error) => {
      if (error.message !== lastError) this.log.warn(`MQTT: ${error.message}`);
      lastError = error.message;
    });
    client.on('connect', () => {
      lastError = '';
      this.log.log(`connected to ${broker.url} as ${rules.mqttClientId} (linkage commands)`);
    });
    // Not a health check of its own: without the broker only commands wait (in the outbox), ingest and
    // rules go on — /health must not take the kernel out of service for it. Shown in the `rules` check.
    this.connected.set(0);
    client.on('connect', () => this.connected.set(1));
    client.on('close', () => this.connected.set(0));
    // Not fatal: commands wait (and are retried) until the broker is there.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 10_000);
      client.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  async onApplicationShutdown(): Promise<void> {
    // Forced: a command the broker never acknowledges would keep a graceful end waiting forever; what
    // was not acknowledged is still in the outbox, for the next kernel.
    await this.client?.endAsync(true).catch(() => undefined);
  }

  /** Whether the broker connection is up (for /health details). */
  isConnected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Device replies (`devices/+/command/reply`), taken in the replicas' shared subscription. */
  onReply(handler: (topic: string, payload: Buffer, packet: IPublishPacket) => void): void {
    const client = this.client;
    if (!client) throw new Error('MQTT client not started');
    const filter = `$share/${this.config.rules.commands.replyGroup}/devices/+/command/reply`;
    const subscribe = () =>
      client.subscribe(filter, { qos: 1 }, (error) => {
        if (error) this.log.warn(`cannot subscribe to device replies: ${error.message}`);
      });
    client.on('message', (topic, payload, packet) => {
      if (topic.endsWith('/command/reply')) handler(topic, payload, packet);
    });
    client.on('connect', subscribe);
    if (client.connected) subscribe();
  }

  /**
   * Publishes the command (MQTT 5: message expiry = the rest of its time to live, so a broker never
   * delivers it late; correlation data = its id; response topic = the device's reply topic). Resolves
   * with the traceparent of its send span (the reply's span continues it) once the broker took it.
   */
  async send(command: PlannedCommand, expiresAt: number): Promise<string> {
    const expirySeconds = messageExpirySeconds({ expiresAt }, Date.now());
    const client = this.client;
    const topic = deviceCommandTopic(command.deviceId);
    const span = tracer.startSpan(
      'send devices/+/command',
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          'messaging.system': 'mqtt',
          'network.protocol.name': 'mqtt',
          'messaging.operation.type': 'send',
          'messaging.operation.name': 'send',
          'messaging.destination.name': topic,
          'messaging.destination.template': 'devices/+/command',
          'messaging.message.id': command.commandId,
          'messaging.mqtt.qos': 1,
          'dmp.rule.id': command.ruleId,
          'dmp.device.id': command.deviceId,
        },
      },
      context.active(),
    );
    const carrier = injectTraceContext(trace.setSpan(context.active(), span));
    const payload: DeviceCommand = {
      commandId: command.commandId,
      ruleId: command.ruleId,
      name: command.name,
      params: command.params,
      ts: command.ts,
      expiresAt,
      replyTopic: deviceCommandReplyTopic(command.deviceId),
    };
    let timer: NodeJS.Timeout | undefined;
    try {
      if (!client) throw new Error('MQTT client not started');
      await Promise.race([
        client.publishAsync(topic, JSON.stringify(payload), {
          qos: 1,
          properties: {
            contentType: 'application/json',
            messageExpiryInterval: expirySeconds,
            correlationData: Buffer.from(command.commandId),
            responseTopic: deviceCommandReplyTopic(command.deviceId),
            ...mqttTraceProperties(carrier),
          },
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no PUBACK within ${this.config.rules.commandTimeoutMs} ms`)),
            this.config.rules.commandTimeoutMs,
          );
        }),
      ]);
      this.sent.inc({ result: 'ok' });
      return carrier.traceparent ?? '';
    } catch (error) {
      this.sent.inc({ result: 'error' });
      recordFailure(span, error);
      throw new DmpError(
        OutboxErrorCode.CommandUnavailable,
        `command ${command.name} to ${command.deviceId} not acknowledged by the broker: ${(error as Error).message}`,
        true,
        { cause: error },
      );
    } finally {
      clearTimeout(timer);
      span.end();
    }
  }
}
