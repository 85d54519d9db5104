import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { HealthRegistry, MetricsRegistry } from '@dmp/observability';
import { Inject, Injectable, Logger, type BeforeApplicationShutdown } from '@nestjs/common';
import { Server, type CustomTransportStrategy, type MessageHandler } from '@nestjs/microservices';
import mqtt, { type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt';
import { generate as generatePacket } from 'mqtt-packet';
import { lastValueFrom } from 'rxjs';
import type { Counter, Gauge, Histogram } from 'prom-client';
import { AckSequencer, NO_ACK, type Slot } from './ack-sequencer';
import { MqttContext, type MqttDeliveryInfo } from './mqtt.context';
import {
  ackWith,
  isMqttSettlement,
  PubackReason,
  preciseNow,
  redeliver,
  type MqttDeliveryEnd,
  type MqttMessage,
  type MqttSettlement,
} from './mqtt-message';
import { matchingFilter, sharedSubscription } from './topic-filter';

export const MQTT_INGEST_TRANSPORT = Symbol('MQTT_INGEST');
export const MQTT_INGEST_OPTIONS = Symbol('MQTT_INGEST_OPTIONS');

/** One broker dmp-mqtt consumes from: independent brokers, devices partitioned between them (docs/adr/0008). */
export interface BrokerEndpoint {
  url: string;
  /** MQTT client id on this broker: stable per replica and broker (the persistent session is found by it). */
  clientId: string;
  /** `host:port`: the `broker` label of the metrics and the key in /health. */
  address: string;
}

export interface MqttIngestOptions {
  /** Every broker gets the same share group and subscriptions, on a connection of its own. */
  brokers: readonly BrokerEndpoint[];
  username?: string;
  password?: string;
  shareGroup: string;
  /** Each topic filter is subscribed as `$share/{shareGroup}/{filter}`; its messages go to `pattern`'s handler. */
  subscriptions: readonly { filter: string; pattern: string }[];
  /** MQTT 5 Receive Maximum: unacknowledged QoS 1 messages each broker may have in flight to this replica. */
  receiveMaximum: number;
  /**
   * Payload bytes held unacknowledged at most, over all brokers (unset: no byte bound). The broker knows
   * no such limit: above it the transport stops reading, exactly as at Receive Maximum messages.
   */
  maxInFlightBytes?: number;
  sessionExpirySeconds: number;
  keepaliveSeconds: number;
  /** Packets larger than this are discarded by the broker instead of being sent (memory guard). */
  maximumPacketSize: number;
  drainTimeoutMs: number;
  /** See MQTT_STOP_MODE (apps/dmp-mqtt/src/config.ts). */
  stopMode: 'keep-session' | 'hand-over';
}

type State = 'idle' | 'running' | 'draining' | 'closed';
type Stream = MqttClient['stream'];

/**
 * Nest transport for device ingestion over MQTT 5 shared subscriptions, acknowledging a message only once
 * it was taken care of (at-least-once).
 *
 * Acknowledgement. mqtt.js processes incoming packets strictly one after the other: `customHandleAcks`
 * and `handleMessage` hold the whole connection (later PUBLISHes, SUBACKs, PINGRESPs) until their callback
 * runs, so holding the PUBACK there until dmp-kernel answers would process one message per round trip
 * and make Receive Maximum meaningless. Instead the `handleMessage` hook takes each PUBLISH, starts its
 * processing, and returns at once *with an error*, which makes mqtt.js move on without sending the PUBACK
 * (QoS 1 branch of its publish handler). The PUBACK is written later by {@link AckSequencer}, in arrival
 * order, on the very connection that delivered the message — never on a later one, where the packet id
 * may name another message. Receive Maximum therefore bounds what is in flight in this process: the
 * broker stops sending and queues instead of us buffering or dropping. Not every broker keeps to it
 * (Mosquitto 2.0.11 overruns it once PUBACKs flow, eclipse-mosquitto/mosquitto#2301), so the transport
 * also enforces it itself: at Receive Maximum messages in flight — or at `maxInFlightBytes` of payload,
 * a bound MQTT has no word for (8000 messages of 64 KiB would be 512 MiB) — it holds mqtt.js's callback,
 * which stops reading the socket (TCP backpressure) until acknowledgements make room. A PINGRESP then waits behind the
 * PUBLISHes read before it, and mqtt.js — whose keepalive counts only acknowledgements and PINGRESPs as
 * signs of life — would drop a healthy, busy connection (with every message in flight) as "Keepalive
 * timeout". So the transport keeps the keepalive itself while messages arrive or intake is paused: every
 * half keepalive it sends a PINGREQ (the broker hears from the client even while no PUBACK goes out) and
 * tells mqtt.js the connection is alive; an idle connection is left to mqtt.js's own keepalive.
 *
 * What is not acknowledged is redelivered by the broker only when the client reconnects to its session
 * (MQTT 5 forbids resending within a connection, and a PUBACK with an error reason code counts as an
 * acknowledgement). Hence a persistent session (Clean Start 0, Session Expiry > 0) under a client id that
 * is stable per replica: after a crash, a reconnect, or a message that could not be handed off (the
 * handler answers `redeliver`, and this transport replaces the connection), the broker sends again
 * everything unacknowledged. A message that cannot be decided until something comes back (the device
 * registry: `redeliver` with `after`) is the one exception to the PUBACK order: it is left unacknowledged
 * without holding back the acknowledgements behind it, and the connection is replaced once `after`
 * resolves. With a clean session Mosquitto would drop the in-flight messages of a
 * closed connection instead of handing them to another group member. While a replica is down its
 * persistent session keeps receiving its share of the group's messages until it comes back or the
 * session expires (then the broker hands them to the other members). A graceful stop uses that: it
 * stays subscribed, takes nothing new, finishes what is in flight and disconnects keeping the session
 * (MQTT_STOP_MODE=keep-session) — nothing is lost even with one replica, and the next start gets its
 * share again. `hand-over` unsubscribes first and ends the session once drained (Session Expiry 0 on
 * DISCONNECT): the others take over at once, but with no other member subscribed the broker drops what
 * devices publish meanwhile (EMQX answers them PUBACK 0x10).
 *
 * Several brokers. With independent brokers (MqttIngestOptions.brokers; devices partitioned between
 * them) everything above holds per broker: one {@link BrokerLink} each — its own client, client id,
 * session, shared subscription in the same group, connections, PUBACK order and Receive Maximum —
 * while the handlers, the byte bound and the drain are shared. A message is acknowledged on the
 * connection it came from, which belongs to its broker; a broker that is down only leaves its own
 * devices waiting (in its sessions), the others go on.
 */
@Injectable()
export class MqttIngestServer extends Server implements CustomTransportStrategy, BeforeApplicationShutdown {
  override readonly transportId = MQTT_INGEST_TRANSPORT;
  private readonly log = new Logger('MqttIngestServer');
  private readonly brokers: BrokerLink[];
  private state: State = 'idle';
  /** Payload bytes of the messages in flight, on every broker. */
  private inFlightBytes = 0;
  private readonly filters: string[];
  private readonly patternByFilter: Map<string, string>;
  private readonly handlers = new Map<string, MessageHandler | null>();
  private readonly metrics: TransportMetrics;
  private drained?: Promise<void>;

  constructor(
    @Inject(MQTT_INGEST_OPTIONS) private readonly options: MqttIngestOptions,
    metrics: MetricsRegistry,
    health: HealthRegistry,
  ) {
    super();
    if (options.brokers.length === 0) throw new Error('MqttIngestOptions.brokers is empty');
    this.filters = options.subscriptions.map((s) => s.filter);
    this.patternByFilter = new Map(options.subscriptions.map((s) => [s.filter, s.pattern]));
    this.brokers = options.brokers.map((endpoint) => new BrokerLink(endpoint));
    this.metrics = createTransportMetrics(metrics, this.brokers, () => this.inFlightBytes);
    for (const broker of this.brokers)
      this.metrics.receiveMaximum.set({ broker: broker.address }, options.receiveMaximum);
    // Up while at least one broker is consumed from: a broker that is down stops only its own devices'
    // messages, and taking dmp-mqtt out of service for it would stop the others' too (and EMQX's
    // authentication calls). Each broker's own state is in the detail and in dmp_mqtt_broker_up.
    health.register('mqtt', () => {
      const brokers = this.brokers.map((broker) => ({
        broker: broker.address,
        up: this.consuming(broker),
        connected: broker.client?.connected ?? false,
        subscribed: broker.subscribed,
        sessionPresent: broker.sessionPresent,
        clientId: broker.clientId,
        inFlight: broker.inFlight.size,
      }));
      return {
        up: brokers.some((broker) => broker.up),
        detail: {
          state: this.state,
          brokersUp: brokers.filter((broker) => broker.up).length,
          inFlightBytes: this.inFlightBytes,
          brokers,
        },
      };
    });
  }

  private consuming(broker: BrokerLink): boolean {
    return this.state === 'running' && broker.client?.connected === true && broker.subscribed;
  }

  /** Starts connecting; the broker being down is not fatal (mqtt.js keeps reconnecting, health says so). */
  listen(callback: (error?: unknown) => void): void {
    try {
      for (const broker of this.brokers) {
        broker.client = mqtt.connect(broker.url, this.clientOptions(broker));
        this.attachListeners(broker, broker.client);
      }
      this.state = 'running';
      callback();
    } catch (error) {
      callback(error);
    }
  }

  /** Drains before the HTTP server and the kernel client go away (Nest calls this before `close`). */
  async beforeApplicationShutdown(): Promise<void> {
    await this.drain();
  }

  async close(): Promise<void> {
    await this.drain();
  }

  /** Listens to every broker's mqtt.js client events (`connect`, `close`, `error`…). Signature of Nest's `Server.on`. */
  // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
  on<EventKey extends string = string, EventCallback extends Function = Function>(
    event: EventKey,
    callback: EventCallback,
  ): void {
    for (const broker of this.brokers)
      broker.client?.on(event as 'connect', callback as unknown as () => void);
  }

  /** The mqtt.js clients, one per broker in the configured order. */
  unwrap<T>(): T {
    if (!this.brokers[0].client) throw new Error('MQTT client not created yet: call listen() first');
    return this.brokers.map((broker) => broker.client) as T;
  }

  private clientOptions(broker: BrokerLink): IClientOptions {
    const o = this.options;
    return {
      protocolVersion: 5,
      clientId: broker.clientId,
      clean: false,
      keepalive: o.keepaliveSeconds,
      reconnectPeriod: 1_000,
      connectTimeout: 10_000,
      // Subscriptions live in the persistent session; re-sent explicitly on each connection without one.
      resubscribe: false,
      queueQoSZero: false,
      username: o.username,
      password: o.password,
      properties: {
        sessionExpiryInterval: o.sessionExpirySeconds,
        receiveMaximum: o.receiveMaximum,
        maximumPacketSize: o.maximumPacketSize,
      },
    };
  }

  private attachListeners(broker: BrokerLink, client: MqttClient): void {
    const at = broker.address;
    // See the class comment: answering with an error makes mqtt.js continue without a PUBACK.
    client.handleMessage = (packet, done) => {
      broker.busy = true;
      this.onPublish(broker, packet);
      if (!this.intakeFull(broker)) done(DEFERRED_ACK);
      else this.pauseIntake(broker, () => done(DEFERRED_ACK));
    };
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'connack') this.onConnack(broker, packet);
    });
    client.on('connect', () => {
      broker.lastClientError = undefined;
      clearInterval(broker.keepaliveTimer);
      broker.keepaliveTimer = setInterval(() => {
        if (!client.connected || (!broker.busy && !broker.resumeIntake)) return;
        broker.busy = false;
        client.sendPing();
        client.reschedulePing(true);
      }, this.options.keepaliveSeconds * 500).unref();
      this.log.log(`connected to ${at} as ${broker.clientId}`);
    });
    client.on('reconnect', () => this.log.warn(`reconnecting to the MQTT broker ${at}`));
    client.on('disconnect', (packet) =>
      this.log.warn(`broker ${at} sent DISCONNECT (reason code ${packet.reasonCode ?? 0})`),
    );
    client.on('error', (error) => {
      // While the broker is unreachable mqtt.js reports the same error on every attempt: log changes only.
      if (error.message === broker.lastClientError) return;
      broker.lastClientError = error.message;
      this.log.error(`MQTT client error (${at}): ${error.message}`);
    });
  }

  private onConnack(broker: BrokerLink, packet: IConnackPacket): void {
    if ((packet.reasonCode ?? 0) !== 0) return;
    broker.sessionPresent = packet.sessionPresent;
    this.connectionFor(broker, broker.client!.stream);
    // Without a session the broker knows no subscription: (re)subscribe. With one, the subscriptions
    // are there, but subscribing again is harmless and picks up configuration changes.
    if (this.state === 'running') void this.subscribe(broker);
  }

  private async subscribe(broker: BrokerLink): Promise<void> {
    const client = broker.client!;
    broker.subscribed = false;
    try {
      const grants = await client.subscribeAsync(
        Object.fromEntries(
          this.filters.map((filter) => [
            sharedSubscription(this.options.shareGroup, filter),
            { qos: 1 as const },
          ]),
        ),
      );
      const refused = grants.filter((grant) => grant.qos >= 0x80);
      if (refused.length > 0)
        throw new Error(`refused: ${refused.map((g) => `${g.topic} (${g.qos})`).join(', ')}`);
      broker.subscribed = true;
      this.log.log(
        `subscribed on ${broker.address} to ${grants.map((g) => `${g.topic} (QoS ${g.qos})`).join(', ')}`,
      );
    } catch (error) {
      // The connection closing while subscribing is handled by the next CONNACK.
      if (client.connected) this.log.error(`subscription on ${broker.address} failed: ${describe(error)}`);
    }
  }

  /**
   * One object per network connection: its acknowledgements and the signal that it is gone. mqtt.js
   * still hands over packets it had read when their stream already closed: those get their own closed
   * connection, never a live one (that one's messages would overtake the broker's redelivery).
   */
  private connectionFor(broker: BrokerLink, stream: Stream): Connection {
    const known = broker.connections.get(stream);
    if (known) return known;
    const connection = new Connection(broker, stream, (delivery, reasonCode) =>
      this.writePuback(delivery, reasonCode),
    );
    broker.connections.set(stream, connection);
    if (stream.destroyed) {
      connection.close();
      return connection;
    }
    broker.connection = connection;
    stream.once('close', () => this.onConnectionClosed(connection));
    return connection;
  }

  private onPublish(broker: BrokerLink, packet: IPublishPacket): void {
    // Stopping with the session kept: left unacknowledged, the broker sends it again to the next start.
    if (this.state !== 'running' && this.keepsSession()) return;
    const receivedAt = preciseNow();
    broker.lastDeliveryAt = receivedAt;
    const connection = this.connectionFor(broker, broker.client!.stream);
    // Read after its connection closed, or after a message before it was left for redelivery (whose
    // missing PUBACK holds back every later one): it can never be acknowledged there, and the broker
    // sends it again on the session's next connection, in its order. Handing it off now would put it
    // ahead of the redelivered message.
    if (connection.signal.aborted || connection.redeliveryRequested) return;
    const subscription = matchingFilter(this.filters, packet.topic) ?? '';
    const delivery = new Delivery(connection, packet, subscription, receivedAt);
    broker.inFlight.add(delivery);
    this.inFlightBytes += delivery.bytes;
    if (packet.qos > 0) delivery.slot = connection.acks.add(delivery);
    void this.dispatch(delivery);
  }

  private async dispatch(delivery: Delivery): Promise<void> {
    let settlement: MqttSettlement;
    const handler = this.handlerFor(delivery.subscription);
    if (!handler) {
      // A message for a filter this replica does not serve (e.g. left over in the session from an older
      // configuration): nobody will ever take it, redelivering it would loop.
      this.log.warn(`no handler for ${delivery.packet.topic}; acknowledged and dropped`);
      this.metrics.unroutable.inc({ broker: delivery.broker.address });
      settlement = ackWith(PubackReason.ImplementationSpecificError);
    } else {
      try {
        const context = new MqttContext([delivery.info(this.options, preciseNow())]);
        const result: unknown = await lastValueFrom(
          this.transformToObservable(await handler(toMqttMessage(delivery.packet), context)),
          { defaultValue: undefined },
        );
        settlement = isMqttSettlement(result) ? result : redeliver(`handler answered ${describe(result)}`);
      } catch (error) {
        this.log.error(`handler failed for ${delivery.packet.topic}: ${describe(error)}`);
        settlement = redeliver(describe(error));
      }
    }
    this.settle(delivery, settlement);
  }

  /** Nest's lookup parses the pattern on every call (a thrown JSON.parse): resolve each filter's handler once. */
  private handlerFor(subscription: string): MessageHandler | null {
    let handler = this.handlers.get(subscription);
    if (handler === undefined) {
      const pattern = this.patternByFilter.get(subscription);
      handler = pattern === undefined ? null : this.getHandlerByPattern(pattern);
      this.handlers.set(subscription, handler);
    }
    return handler;
  }

  private settle(delivery: Delivery, settlement: MqttSettlement): void {
    if (delivery.ended) return;
    const qos0 = delivery.packet.qos === 0;
    if (settlement.action === 'redeliver') {
      if (qos0) this.end(delivery, { acked: false, reason: settlement.reason, at: preciseNow() });
      else if (settlement.after) this.deferRedelivery(delivery, settlement.reason, settlement.after);
      else this.requestRedelivery(delivery.connection, settlement.reason);
      return;
    }
    if (qos0) this.end(delivery, { acked: true, reasonCode: settlement.reasonCode, at: preciseNow() });
    else delivery.connection.acks.settle(delivery.slot!, settlement.reasonCode);
  }

  private writePuback(delivery: Delivery, reasonCode: number): void {
    if (reasonCode === NO_ACK) {
      this.end(delivery, { acked: false, reason: 'left for a later redelivery', at: preciseNow() });
      return;
    }
    const { stream } = delivery.connection;
    if (delivery.connection.signal.aborted || !stream.writable) {
      this.end(delivery, {
        acked: false,
        reason: 'connection lost before the acknowledgement',
        at: preciseNow(),
      });
      return;
    }
    stream.write(
      generatePacket(
        { cmd: 'puback', messageId: delivery.packet.messageId, reasonCode },
        { protocolVersion: 5 },
      ),
    );
    this.end(delivery, { acked: true, reasonCode, at: preciseNow() });
  }

  /**
   * Messages or payload bytes in flight at their bound. The one condition intake pauses on, and resumes
   * once false again: one message is always let in, however large (else a payload above the byte bound
   * would stop intake for good).
   */
  private intakeFull(broker: BrokerLink): boolean {
    const { receiveMaximum, maxInFlightBytes = Infinity } = this.options;
    return broker.inFlight.size >= receiveMaximum || this.inFlightBytes >= maxInFlightBytes;
  }

  /** Stops reading from the broker until in flight is below its bounds again ({@link intakeFull}). */
  private pauseIntake(broker: BrokerLink, resume: () => void): void {
    broker.resumeIntake = resume;
    broker.pausedAt = preciseNow();
    this.metrics.intakePauses.inc({ broker: broker.address });
  }

  private maybeResumeIntake(broker: BrokerLink): void {
    if (!broker.resumeIntake || this.intakeFull(broker)) return;
    const resume = broker.resumeIntake;
    broker.resumeIntake = undefined;
    this.metrics.intakePausedSeconds.inc({ broker: broker.address }, (preciseNow() - broker.pausedAt) / 1000);
    resume();
  }

  private end(delivery: Delivery, end: MqttDeliveryEnd): void {
    if (delivery.ended) return;
    delivery.ended = true;
    delivery.broker.inFlight.delete(delivery);
    this.inFlightBytes -= delivery.bytes;
    // Its own broker first (Receive Maximum), then the others: the byte bound is shared.
    this.maybeResumeIntake(delivery.broker);
    for (const broker of this.brokers) if (broker !== delivery.broker) this.maybeResumeIntake(broker);
    this.metrics.processSeconds.observe(
      { result: end.acked ? 'acked' : 'unacked', broker: delivery.broker.address },
      (end.at - delivery.receivedAt) / 1000,
    );
    for (const listener of delivery.listeners) {
      try {
        listener(end);
      } catch (error) {
        this.log.error(`delivery end listener failed: ${describe(error)}`);
      }
    }
  }

  /**
   * A message could not be handed off: it stays unacknowledged (and holds back the acknowledgements
   * behind it), and the connection is replaced so the broker redelivers it from the session.
   */
  private requestRedelivery(connection: Connection, reason: string): void {
    if (connection.redeliveryRequested || connection.signal.aborted) return;
    connection.redeliveryRequested = true;
    const { broker } = connection;
    this.metrics.redeliveries.inc({ broker: broker.address });
    if (this.state !== 'running') {
      this.log.warn(`left unacknowledged for redelivery after restart (${reason})`);
      return;
    }
    // Not connected: the connection is already going away, and the next one gets the redelivery anyway.
    if (!broker.client?.connected) return;
    this.log.warn(
      `reconnecting to ${broker.address} so that the broker redelivers unacknowledged messages (${reason})`,
    );
    broker.client.reconnect();
  }

  /**
   * A message that cannot be decided yet: out of the acknowledgement order (the messages behind it are
   * acknowledged as they are settled), unacknowledged in the session, and redelivered by the broker once
   * the connection is replaced — when `after` resolves (or earlier, if the connection goes for another
   * reason).
   */
  private deferRedelivery(delivery: Delivery, reason: string, after: Promise<void>): void {
    const { connection } = delivery;
    this.metrics.deferred.inc({ broker: connection.broker.address });
    connection.acks.settle(delivery.slot!, NO_ACK);
    void after.then(
      () => this.requestRedelivery(connection, reason),
      () => this.requestRedelivery(connection, reason),
    );
  }

  private onConnectionClosed(connection: Connection): void {
    const { broker } = connection;
    if (broker.connection === connection) {
      broker.connection = undefined;
      broker.subscribed = false;
    }
    connection.close();
    const lost = connection.acks.drain();
    if (lost.length > 0)
      this.log.warn(`connection to ${broker.address} closed with ${lost.length} unacknowledged message(s)`);
    for (const delivery of lost) {
      this.end(delivery, {
        acked: false,
        reason: 'connection closed before the acknowledgement',
        at: preciseNow(),
      });
    }
  }

  /** A graceful stop keeps the session (and the subscription in it) for the next start. */
  private keepsSession(): boolean {
    return this.options.stopMode === 'keep-session' && this.options.sessionExpirySeconds > 0;
  }

  /**
   * Graceful stop (see the class comment). keep-session: take nothing new, wait until what is in flight
   * is acknowledged, disconnect keeping the session. hand-over: unsubscribe (new messages go to the
   * other group members), keep processing what the broker already assigned to this session, wait until
   * everything is acknowledged, then disconnect — ending the session when nothing is left in it,
   * keeping it for the next start otherwise.
   */
  private drain(): Promise<void> {
    this.drained ??= this.runDrain();
    return this.drained;
  }

  private async runDrain(): Promise<void> {
    if (this.state !== 'running') {
      this.state = 'closed';
      return;
    }
    this.state = 'draining';
    const deadline = Date.now() + this.options.drainTimeoutMs;
    await Promise.all(this.brokers.map((broker) => this.drainBroker(broker, deadline)));
    this.state = 'closed';
  }

  /** One broker's part of {@link drain}; the brokers drain side by side, within one deadline. */
  private async drainBroker(broker: BrokerLink, deadline: number): Promise<void> {
    const client = broker.client;
    if (!client) return;
    const at = broker.address;
    const handOver = !this.keepsSession();
    if (handOver && client.connected) {
      try {
        await withTimeout(
          client.unsubscribeAsync(
            this.filters.map((filter) => sharedSubscription(this.options.shareGroup, filter)),
          ),
          Math.max(0, deadline - Date.now()),
        );
      } catch (error) {
        this.log.warn(`unsubscribe from ${at} failed: ${describe(error)}`);
      }
    }
    if (handOver) broker.subscribed = false;
    this.log.log(
      handOver
        ? `draining ${at}: unsubscribed, ${broker.inFlight.size} message(s) in flight`
        : `draining ${at}: taking nothing new (the session keeps it), ${broker.inFlight.size} message(s) in flight`,
    );
    // Settled = nothing in flight and, handing over, nothing new for a moment (the session may still hold
    // queued messages).
    while (
      Date.now() < deadline &&
      (broker.inFlight.size > 0 || (handOver && preciseNow() - broker.lastDeliveryAt < QUIET_MS))
    ) {
      await sleep(10);
    }
    const left = broker.inFlight.size;
    const endSession = handOver && left === 0 && client.connected && this.options.sessionExpirySeconds > 0;
    if (left > 0)
      this.log.warn(
        `drain of ${at} timed out with ${left} message(s) unacknowledged; the session keeps them`,
      );
    else this.log.log(`drained ${at}: every received message is acknowledged`);
    clearInterval(broker.keepaliveTimer);
    try {
      await withTimeout(
        client.endAsync(false, endSession ? { properties: { sessionExpiryInterval: 0 } } : {}),
        5_000,
      );
    } catch (error) {
      this.log.warn(`disconnect from ${at} did not complete (${describe(error)}); closing the socket`);
      client.end(true);
    }
  }
}

const DEFERRED_ACK = new Error('acknowledgement deferred until the message is handed off');
const QUIET_MS = 200;

/** One broker's side of the transport: its client, connections, session and intake. */
class BrokerLink {
  readonly url: string;
  readonly clientId: string;
  readonly address: string;
  client?: MqttClient;
  /** The live connection (undefined while there is none). */
  connection?: Connection;
  /** Every connection seen, by its stream (late packets of a closed one find it). */
  readonly connections = new WeakMap<Stream, Connection>();
  subscribed = false;
  sessionPresent = false;
  /** Received from this broker and not acknowledged yet (bounded by Receive Maximum). */
  readonly inFlight = new Set<Delivery>();
  lastDeliveryAt = 0;
  resumeIntake?: () => void;
  pausedAt = 0;
  keepaliveTimer?: NodeJS.Timeout;
  /** A PUBLISH arrived since the last keepalive tick. */
  busy = false;
  lastClientError?: string;

  constructor(endpoint: BrokerEndpoint) {
    this.url = endpoint.url;
    this.clientId = endpoint.clientId;
    this.address = endpoint.address;
  }
}

class Connection {
  readonly acks: AckSequencer<Delivery>;
  redeliveryRequested = false;
  private readonly controller = new AbortController();

  constructor(
    readonly broker: BrokerLink,
    readonly stream: Stream,
    release: (delivery: Delivery, reasonCode: number) => void,
  ) {
    this.acks = new AckSequencer(release);
    // Every in-flight delivery's hand-off listens to this signal.
    setMaxListeners(0, this.controller.signal);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  close(): void {
    this.controller.abort(new Error('MQTT connection closed'));
  }
}

class Delivery {
  slot?: Slot<Delivery>;
  ended = false;
  readonly listeners: ((end: MqttDeliveryEnd) => void)[] = [];
  /** Payload size, counted against MqttIngestOptions.maxInFlightBytes. */
  readonly bytes: number;

  constructor(
    readonly connection: Connection,
    readonly packet: IPublishPacket,
    readonly subscription: string,
    readonly receivedAt: number,
  ) {
    const { payload } = packet;
    this.bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  }

  get broker(): BrokerLink {
    return this.connection.broker;
  }

  info(options: MqttIngestOptions, dispatchedAt: number): MqttDeliveryInfo {
    return {
      packet: this.packet,
      subscription: this.subscription,
      shareGroup: options.shareGroup,
      clientId: this.broker.clientId,
      broker: this.broker.address,
      receivedAt: this.receivedAt,
      dispatchedAt,
      signal: this.connection.signal,
      onEnd: (listener) => {
        this.listeners.push(listener);
      },
    };
  }
}

function toMqttMessage(packet: IPublishPacket): MqttMessage {
  const p = packet.properties;
  const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
  return {
    topic: packet.topic,
    payload,
    qos: packet.qos,
    properties: {
      contentType: p?.contentType,
      userProperties: p?.userProperties ?? {},
      messageExpiryInterval: p?.messageExpiryInterval,
      payloadFormatIndicator: p?.payloadFormatIndicator,
    },
  };
}

interface TransportMetrics {
  processSeconds: Histogram<'result' | 'broker'>;
  intakePauses: Counter<'broker'>;
  intakePausedSeconds: Counter<'broker'>;
  redeliveries: Counter<'broker'>;
  deferred: Counter<'broker'>;
  unroutable: Counter<'broker'>;
  inFlight: Gauge<'broker'>;
  inFlightBytes: Gauge;
  receiveMaximum: Gauge<'broker'>;
  brokerUp: Gauge<'broker'>;
}

/** Per broker (label `broker`, its `host:port`), except the byte count, which is bounded over all of them. */
function createTransportMetrics(
  registry: MetricsRegistry,
  brokers: readonly BrokerLink[],
  inFlightBytes: () => number,
): TransportMetrics {
  const metrics: TransportMetrics = {
    processSeconds: registry.histogram(
      'dmp_mqtt_process_seconds',
      'From receiving an MQTT message to acknowledging it (or giving it up for redelivery)',
      ['result', 'broker'],
    ),
    intakePauses: registry.counter(
      'dmp_mqtt_intake_pauses_total',
      'Times reading from the broker stopped because Receive Maximum messages, or the in-flight byte bound, were in flight',
      ['broker'],
    ),
    intakePausedSeconds: registry.counter(
      'dmp_mqtt_intake_paused_seconds_total',
      'Time spent not reading from the broker because Receive Maximum messages, or the in-flight byte bound, were in flight',
      ['broker'],
    ),
    redeliveries: registry.counter(
      'dmp_mqtt_redelivery_requests_total',
      'Times a message could not be handed off and the connection was replaced for the broker to redeliver',
      ['broker'],
    ),
    deferred: registry.counter(
      'dmp_mqtt_deferred_total',
      'Messages left unacknowledged without holding back the acknowledgements behind them, redelivered once what they wait for is back (the device registry)',
      ['broker'],
    ),
    unroutable: registry.counter('dmp_mqtt_unroutable_total', 'Messages on a topic no handler serves', [
      'broker',
    ]),
    inFlight: registry.gauge(
      'dmp_mqtt_in_flight',
      'MQTT messages received and not yet acknowledged',
      ['broker'],
      function () {
        for (const broker of brokers) this.set({ broker: broker.address }, broker.inFlight.size);
      },
    ),
    inFlightBytes: registry.gauge(
      'dmp_mqtt_in_flight_bytes',
      'Payload bytes of the MQTT messages received and not yet acknowledged, from every broker (bounded by MQTT_MAX_IN_FLIGHT_BYTES)',
      [],
      function () {
        this.set(inFlightBytes());
      },
    ),
    receiveMaximum: registry.gauge(
      'dmp_mqtt_receive_maximum',
      'MQTT 5 Receive Maximum of the connection: the most messages dmp-mqtt holds unacknowledged (dmp_mqtt_in_flight)',
      ['broker'],
    ),
    brokerUp: registry.gauge(
      'dmp_mqtt_broker_up',
      '1 while dmp-mqtt is connected and subscribed to the broker, 0 otherwise',
      ['broker'],
      function () {
        for (const broker of brokers)
          this.set(
            { broker: broker.address },
            broker.client?.connected === true && broker.subscribed ? 1 : 0,
          );
      },
    ),
  };
  // Every broker's counters exist from the start at 0: a series appears only once its labels are
  // used, and a dashboard's rate() or an alert's `> bool` has nothing to read before that.
  for (const counter of [
    metrics.intakePauses,
    metrics.intakePausedSeconds,
    metrics.redeliveries,
    metrics.deferred,
    metrics.unroutable,
  ])
    for (const broker of brokers) counter.inc({ broker: broker.address }, 0);
  return metrics;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([
    promise,
    sleep(ms, undefined, { ref: false }).then(() => {
      throw new Error(`timed out after ${ms} ms`);
    }),
  ]);
}

/** Error text of anything thrown, including Nest's RPC error objects (`{ status, message }`). */
export function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === 'object' && error !== null && 'message' in error) return String(error.message);
  return typeof error === 'string' ? error : (JSON.stringify(error) ?? String(error));
}
