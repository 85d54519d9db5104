import { setTimeout as sleep } from 'node:timers/promises';
import { brokerAddress } from '@dmp/config';
import { deviceCommandReplyTopic, deviceCommandTopic, DmpError, OutboxErrorCode } from '@dmp/contracts';
import { injectTraceContext, MetricsRegistry, mqttTraceProperties, recordFailure } from '@dmp/observability';
import { messageExpirySeconds, type PlannedCommand } from '@dmp/rules';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { context, SpanKind, trace } from '@opentelemetry/api';
import mqtt, { type IClientPublishOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Counter, Gauge } from 'prom-client';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { commandTargets, firstAcknowledged } from './command-fan-out';

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
 *
 * Several independent brokers (MQTT_URLS, docs/adr/0008): the kernel does not know which one a device is
 * connected to, so each command goes to every connected broker and counts as sent once one of them
 * acknowledged it — the device is on one broker at a time and receives it from that one. A device that
 * moved keeps the same `commandId` on every copy, so one that gets it twice (e.g. queued in a persistent
 * session it left on another broker) can tell.
 */
@Injectable()
export class CommandPublisher implements OnModuleInit, OnApplicationShutdown {
  private readonly log = new Logger('Commands');
  private clients: { broker: string; client: MqttClient }[] = [];
  private readonly sent: Counter<'result'>;
  private readonly connected: Gauge<'broker'>;

  constructor(
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
    metrics: MetricsRegistry,
  ) {
    this.connected = metrics.gauge(
      'dmp_kernel_mqtt_connected',
      '1 while the linkage command connection to the broker is up',
      ['broker'],
    );
    this.sent = metrics.counter(
      'dmp_kernel_commands_total',
      'Linkage commands sent to devices, by result (ok | error)',
      ['result'],
    );
  }

  async onModuleInit(): Promise<void> {
    const { mqtt: broker } = this.config;
    this.clients = broker.urls.map((url) => ({ broker: brokerAddress(url), client: this.connect(url) }));
    // Not fatal: commands wait (and are retried) until a broker is there.
    await Promise.race([
      Promise.any(this.clients.map(({ client }) => connected(client))),
      sleep(10_000, undefined, { ref: false }),
    ]);
  }

  /** One broker's connection (same client id on each: the brokers are independent, clean sessions). */
  private connect(url: string): MqttClient {
    const { mqtt: broker, rules } = this.config;
    const address = brokerAddress(url);
    const client = mqtt.connect(url, {
      protocolVersion: 5,
      clientId: rules.mqttClientId,
      clean: true,
      username: broker.username,
      password: broker.password,
      reconnectPeriod: 1_000,
      connectTimeout: 10_000,
      keepalive: 30,
    });
    let lastError = '';
    client.on('error', (error) => {
      if (error.message !== lastError) this.log.warn(`MQTT (${address}): ${error.message}`);
      lastError = error.message;
    });
    client.on('connect', () => {
      lastError = '';
      this.log.log(`connected to ${address} as ${rules.mqttClientId} (linkage commands)`);
    });
    // Not a health check of its own: without the broker only commands wait (in the outbox), ingest and
    // rules go on — /health must not take the kernel out of service for it. Shown in the `rules` check.
    this.connected.set({ broker: address }, 0);
    client.on('connect', () => this.connected.set({ broker: address }, 1));
    client.on('close', () => this.connected.set({ broker: address }, 0));
    return client;
  }

  async onApplicationShutdown(): Promise<void> {
    // Forced: a command the broker never acknowledges would keep a graceful end waiting forever; what
    // was not acknowledged is still in the outbox, for the next kernel.
    await Promise.all(this.clients.map(({ client }) => client.endAsync(true).catch(() => undefined)));
  }

  /** Whether a broker connection is up (for /health details): every broker with one, any with several. */
  isConnected(): boolean {
    return this.clients.some(({ client }) => client.connected);
  }

  /**
   * Device replies (`devices/+/command/reply`), taken in the replicas' shared subscription on every
   * broker: a device replies on the broker it is connected to.
   */
  onReply(handler: (topic: string, payload: Buffer, packet: IPublishPacket) => void): void {
    if (this.clients.length === 0) throw new Error('MQTT client not started');
    const filter = `$share/${this.config.rules.commands.replyGroup}/devices/+/command/reply`;
    for (const { broker, client } of this.clients) {
      const subscribe = () =>
        client.subscribe(filter, { qos: 1 }, (error) => {
          if (error) this.log.warn(`cannot subscribe to device replies on ${broker}: ${error.message}`);
        });
      client.on('message', (topic, payload, packet) => {
        if (topic.endsWith('/command/reply')) handler(topic, payload, packet);
      });
      client.on('connect', subscribe);
      if (client.connected) subscribe();
    }
  }

  /**
   * Publishes the command (MQTT 5: message expiry = the rest of its time to live, so a broker never
   * delivers it late; correlation data = its id; response topic = the device's reply topic). Resolves
   * with the traceparent of its send span (the reply's span continues it) once a broker took it.
   */
  async send(command: PlannedCommand, expiresAt: number): Promise<string> {
    const expirySeconds = messageExpirySeconds({ expiresAt }, Date.now());
    const clients = this.clients;
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
    try {
      if (clients.length === 0) throw new Error('MQTT client not started');
      const targets = commandTargets(clients.map(({ client }) => client.connected));
      if (targets.length === 0) throw new Error('no broker connected');
      const body = JSON.stringify(payload);
      const broker = await firstAcknowledged(
        targets.map((index) => ({
          broker: clients[index].broker,
          acknowledged: publishAcknowledged(
            clients[index].client,
            topic,
            body,
            {
              qos: 1,
              properties: {
                contentType: 'application/json',
                messageExpiryInterval: expirySeconds,
                correlationData: Buffer.from(command.commandId),
                responseTopic: deviceCommandReplyTopic(command.deviceId),
                ...mqttTraceProperties(carrier),
              },
            },
            this.config.rules.commandTimeoutMs,
          ),
        })),
      );
      // Which broker took it first (with several; the others may have taken it too).
      const port = broker.lastIndexOf(':');
      span.setAttributes({
        'server.address': broker.slice(0, port),
        'server.port': Number(broker.slice(port + 1)),
      });
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
      span.end();
    }
  }
}

/**
 * Publishes at QoS 1 and resolves on the broker's PUBACK. Without one within `timeoutMs` it takes the
 * message back from the client and rejects: mqtt.js would otherwise send it again on its next connection,
 * beside the copy the outbox sends when it retries the command.
 */
function publishAcknowledged(
  client: MqttClient,
  topic: string,
  body: string,
  options: IClientPublishOptions,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`no PUBACK within ${timeoutMs} ms`));
      const waiting = Object.entries(client.outgoing).find(([, entry]) => entry.cb === acknowledged);
      if (waiting) client.removeOutgoingMessage(Number(waiting[0]));
    }, timeoutMs);
    const acknowledged = (error?: Error) => {
      clearTimeout(timer);
      if (error) reject(error);
      else resolve();
    };
    client.publish(topic, body, options, acknowledged);
  });
}

function connected(client: MqttClient): Promise<void> {
  return client.connected
    ? Promise.resolve()
    : new Promise((resolve) => client.once('connect', () => resolve()));
}
