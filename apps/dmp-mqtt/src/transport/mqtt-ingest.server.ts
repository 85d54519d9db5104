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

export interface MqttIngestOptions {
  url: string;
  username?: string;
  password?: string;
  clientId: string;
  shareGroup: string;
  /** Each topic filter is subscribed as `$share/{shareGroup}/{filter}`; its messages go to `pattern`'s handler. */
  subscriptions: readonly { filter: string; pattern: string }[];
  /** MQTT 5 Receive Maximum: unacknowledged QoS 1 messages the broker may have in flight to this replica. */
  receiveMaximum: number;
  /**
   * Payload bytes held unacknowledged at most (unset: no byte bound). The broker knows no such limit:
   * above it the transport stops reading, exactly as at Receive Maximum messages.
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
 */
@Injectable()
export class MqttIngestServer extends Server implements CustomTransportStrategy, BeforeApplicationShutdown {
  override readonly transportId = MQTT_INGEST_TRANSPORT;
  private readonly log = new Logger('MqttIngestServer');
  private client?: MqttClient;
  private connection?: Connection;
  /** Every connection seen, by its stream (late packets of a closed one find it). */
  private readonly connections = new WeakMap<Stream, Connection>();
  private state: State = 'idle';
  private subscribed = false;
  private sessionPresent = false;
  private readonly inFlight = new Set<Delivery>();
  /** Payload bytes of the messages in `inFlight`. */
  private inFlightBytes = 0;
  private readonly filters: string[];
  private readonly patternByFilter: Map<string, string>;
  private readonly handlers = new Map<string, MessageHandler | null>();
  private readonly metrics: TransportMetrics;
  private lastDeliveryAt = 0;
  private resumeIntake?: () => void;
  private pausedAt = 0;
  private keepaliveTimer?: NodeJS.Timeout;
  /** A PUBLISH arrived since the last keepalive tick. */
  private busy = false;
  private lastClientError?: string;
  private drained?: Promise<void>;

  constructor(
    @Inject(MQTT_INGEST_OPTIONS) private readonly options: MqttIngestOptions,
    metrics: MetricsRegistry,
    health: HealthRegistry,
  ) {
    super();
    this.filters = options.subscriptions.map((s) => s.filter);
    this.patternByFilter = new Map(options.subscriptions.map((s) => [s.filter, s.pattern]));
    this.metrics = createTransportMetrics(
      metrics,
      () => this.inFlight.size,
      () => this.inFlightBytes,
    );
    this.metrics.receiveMaximum.set(options.receiveMaximum);
    health.register('mqtt', () => ({
      up: this.state === 'running' && this.client?.connected === true && this.subscribed,
      detail: {
        state: this.state,
        connected: this.client?.connected ?? false,
        subscribed: this.subscribed,
        sessionPresent: this.sessionPresent,
        clientId: this.options.clientId,
        inFlight: this.inFlight.size,
        inFlightBytes: this.inFlightBytes,
      },
    }));
  }

  /** Starts connecting; the broker being down is not fatal (mqtt.js keeps reconnecting, health says so). */
  listen(callback: (error?: unknown) => void): void {
    try {
      this.client = mqtt.connect(this.options.url, this.clientOptions());
      this.state = 'running';
      this.attachListeners(this.client);
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

  /** Listens to the mqtt.js client's events (`connect`, `close`, `error`…). Signature of Nest's `Server.on`. */
  // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
  on<EventKey extends string = string, EventCallback extends Function = Function>(
    event: EventKey,
    callback: EventCallback,
  ): void {
    this.client?.on(event as 'connect', callback as unknown as () => void);
  }

  unwrap<T>(): T {
    if (!this.client) throw new Error('MQTT client not created yet: call listen() first');
    return this.client as T;
  }

  private clientOptions(): IClientOptions {
    const o = this.options;
    return {
      protocolVersion: 5,
      clientId: o.clientId,
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

  private attachListeners(client: MqttClient): void {
    // See the class comment: answering with an error makes mqtt.js continue without a PUBACK.
    client.handleMessage = (packet, done) => {
      this.busy = true;
      this.onPublish(packet);
      if (!this.intakeFull()) done(DEFERRED_ACK);
      else this.pauseIntake(() => done(DEFERRED_ACK));
    };
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'connack') this.onConnack(packet);
    });
    client.on('connect', () => {
      this.lastClientError = undefined;
      clearInterval(this.keepaliveTimer);
      this.keepaliveTimer = setInterval(() => {
        if (!client.connected || (!this.busy && !this.resumeIntake)) return;
        this.busy = false;
        client.sendPing();
        client.reschedulePing(true);
      }, this.options.keepaliveSeconds * 500).unref();
      this.log.log(`connected to ${this.options.url} as ${this.options.clientId}`);
    });
    client.on('reconnect', () => this.log.warn('reconnecting to the MQTT broker'));
    client.on('disconnect', (packet) =>
      this.log.warn(`broker sent DISCONNECT (reason code ${packet.reasonCode ?? 0})`),
    );
    client.on('error', (error) => {
      // While the broker is unreachable mqtt.js reports the same error on every attempt: log changes only.
      if (error.message === this.lastClientError) return;
      this.lastClientError = error.message;
      this.log.error(`MQTT client error: ${error.message}`);
    });
  }

  private onConnack(packet: IConnackPacket): void {
    if ((packet.reasonCode ?? 0) !== 0) return;
    this.sessionPresent = packet.sessionPresent;
    this.connectionFor(this.client!.stream);
    // Without a session the broker knows no subscription: (re)subscribe. With one, the subscriptions
    // are there, but subscribing again is harmless and picks up configuration changes.
    if (this.state === 'running') void this.subscribe();
  }

  private async subscribe(): Promise<void> {
    const client = this.client!;
    this.subscribed = false;
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
      this.subscribed = true;
      this.log.log(`subscribed to ${grants.map((g) => `${g.topic} (QoS ${g.qos})`).join(', ')}`);
    } catch (error) {
      // The connection closing while subscribing is handled by the next CONNACK.
      if (client.connected) this.log.error(`subscription failed: ${describe(error)}`);
    }
  }

  /**
   * One object per network connection: its acknowledgements and the signal that it is gone. mqtt.js
   * still hands over packets it had read when their stream already closed: those get their own closed
   * connection, never a live one (that one's messages would overtake the broker's redelivery).
   */
  private connectionFor(stream: Stream): Connection {
    const known = this.connections.get(stream);
    if (known) return known;
    const connection = new Connection(stream, (delivery, reasonCode) =>
      this.writePuback(delivery, reasonCode),
    );
    this.connections.set(stream, connection);
    if (stream.destroyed) {
      connection.close();
      return connection;
    }
    this.connection = connection;
    stream.once('close', () => this.onConnectionClosed(connection));
    return connection;
  }

  private onPublish(packet: IPublishPacket): void {
    // Stopping with the session kept: left unacknowledged, the broker sends it again to the next start.
    if (this.state !== 'running' && this.keepsSession()) return;
    const receivedAt = preciseNow();
    this.lastDeliveryAt = receivedAt;
    const connection = this.connectionFor(this.client!.stream);
    // Read after its connection closed, or after a message before it was left for redelivery (whose
    // missing PUBACK holds back every later one): it can never be acknowledged there, and the broker
    // sends it again on the session's next connection, in its order. Handing it off now would put it
    // ahead of the redelivered message.
    if (connection.signal.aborted || connection.redeliveryRequested) return;
    const subscription = matchingFilter(this.filters, packet.topic) ?? '';
    const delivery = new Delivery(connection, packet, subscription, receivedAt);
    this.inFlight.add(delivery);
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
      this.metrics.unroutable.inc();
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
  private intakeFull(): boolean {
    const { receiveMaximum, maxInFlightBytes = Infinity } = this.options;
    return this.inFlight.size >= receiveMaximum || this.inFlightBytes >= maxInFlightBytes;
  }

  /** Stops reading from the broker until in flight is below its bounds again ({@link intakeFull}). */
  private pauseIntake(resume: () => void): void {
    this.resumeIntake = resume;
    this.pausedAt = preciseNow();
    this.metrics.intakePauses.inc();
  }

  private maybeResumeIntake(): void {
    if (!this.resumeIntake || this.intakeFull()) return;
    const resume = this.resumeIntake;
    this.resumeIntake = undefined;
    this.metrics.intakePausedSeconds.inc((preciseNow() - this.pausedAt) / 1000);
    resume();
  }

  private end(delivery: Delivery, end: MqttDeliveryEnd): void {
    if (delivery.ended) return;
    delivery.ended = true;
    this.inFlight.delete(delivery);
    this.inFlightBytes -= delivery.bytes;
    this.maybeResumeIntake();
    this.metrics.processSeconds.observe(
      { result: end.acked ? 'acked' : 'unacked' },
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
    this.metrics.redeliveries.inc();
    if (this.state !== 'running') {
      this.log.warn(`left unacknowledged for redelivery after restart (${reason})`);
      return;
    }
    // Not connected: the connection is already going away, and the next one gets the redelivery anyway.
    if (!this.client?.connected) return;
    this.log.warn(`reconnecting so that the broker redelivers unacknowledged messages (${reason})`);
    this.client.reconnect();
  }

  /**
   * A message that cannot be decided yet: out of the acknowledgement order (the messages behind it are
   * acknowledged as they are settled), unacknowledged in the session, and redelivered by the broker once
   * the connection is replaced — when `after` resolves (or earlier, if the connection goes for another
   * reason).
   */
  private deferRedelivery(delivery: Delivery, reason: string, after: Promise<void>): void {
    const { connection } = delivery;
    this.metrics.deferred.inc();
    connection.acks.settle(delivery.slot!, NO_ACK);
    void after.then(
      () => this.requestRedelivery(connection, reason),
      () => this.requestRedelivery(connection, reason),
    );
  }

  private onConnectionClosed(connection: Connection): void {
    if (this.connection === connection) {
      this.connection = undefined;
      this.subscribed = false;
    }
    connection.close();
    const lost = connection.acks.drain();
    if (lost.length > 0) this.log.warn(`connection closed with ${lost.length} unacknowledged message(s)`);
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
    const client = this.client;
    if (!client || this.state !== 'running') {
      this.state = 'closed';
      return;
    }
    this.state = 'draining';
    const deadline = Date.now() + this.options.drainTimeoutMs;
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
        this.log.warn(`unsubscribe failed: ${describe(error)}`);
      }
    }
    if (handOver) this.subscribed = false;
    this.log.log(
      handOver
        ? `draining: unsubscribed, ${this.inFlight.size} message(s) in flight`
        : `draining: taking nothing new (the session keeps it), ${this.inFlight.size} message(s) in flight`,
    );
    // Settled = nothing in flight and, handing over, nothing new for a moment (the session may still hold
    // queued messages).
    while (
      Date.now() < deadline &&
      (this.inFlight.size > 0 || (handOver && preciseNow() - this.lastDeliveryAt < QUIET_MS))
    ) {
      await sleep(10);
    }
    const left = this.inFlight.size;
    const endSession = handOver && left === 0 && client.connected && this.options.sessionExpirySeconds > 0;
    if (left > 0)
      this.log.warn(`drain timed out with ${left} message(s) unacknowledged; the session keeps them`);
    else this.log.log('drained: every received message is acknowledged');
    this.state = 'closed';
    clearInterval(this.keepaliveTimer);
    try {
      await withTimeout(
        client.endAsync(false, endSession ? { properties: { sessionExpiryInterval: 0 } } : {}),
        5_000,
      );
    } catch (error) {
      this.log.warn(`disconnect did not complete (${describe(error)}); closing the socket`);
      client.end(true);
    }
  }
}

const DEFERRED_ACK = new Error('acknowledgement deferred until the message is handed off');
const QUIET_MS = 200;

class Connection {
  readonly acks: AckSequencer<Delivery>;
  redeliveryRequested = false;
  private readonly controller = new AbortController();

  constructor(
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

  info(options: MqttIngestOptions, dispatchedAt: number): MqttDeliveryInfo {
    return {
      packet: this.packet,
      subscription: this.subscription,
      shareGroup: options.shareGroup,
      clientId: options.clientId,
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
  processSeconds: Histogram<'result'>;
  intakePauses: Counter;
  intakePausedSeconds: Counter;
  redeliveries: Counter;
  deferred: Counter;
  unroutable: Counter;
  inFlight: Gauge;
  inFlightBytes: Gauge;
  receiveMaximum: Gauge;
}

function createTransportMetrics(
  registry: MetricsRegistry,
  inFlight: () => number,
  inFlightBytes: () => number,
): TransportMetrics {
  return {
    processSeconds: registry.histogram(
      'dmp_mqtt_process_seconds',
      'From receiving an MQTT message to acknowledging it (or giving it up for redelivery)',
      ['result'],
    ),
    intakePauses: registry.counter(
      'dmp_mqtt_intake_pauses_total',
      'Times reading from the broker stopped because Receive Maximum messages, or the in-flight byte bound, were in flight',
    ),
    intakePausedSeconds: registry.counter(
      'dmp_mqtt_intake_paused_seconds_total',
      'Time spent not reading from the broker because Receive Maximum messages, or the in-flight byte bound, were in flight',
    ),
    redeliveries: registry.counter(
      'dmp_mqtt_redelivery_requests_total',
      'Times a message could not be handed off and the connection was replaced for the broker to redeliver',
    ),
    deferred: registry.counter(
      'dmp_mqtt_deferred_total',
      'Messages left unacknowledged without holding back the acknowledgements behind them, redelivered once what they wait for is back (the device registry)',
    ),
    unroutable: registry.counter('dmp_mqtt_unroutable_total', 'Messages on a topic no handler serves'),
    inFlight: registry.gauge(
      'dmp_mqtt_in_flight',
      'MQTT messages received and not yet acknowledged',
      [],
      function () {
        this.set(inFlight());
      },
    ),
    inFlightBytes: registry.gauge(
      'dmp_mqtt_in_flight_bytes',
      'Payload bytes of the MQTT messages received and not yet acknowledged (bounded by MQTT_MAX_IN_FLIGHT_BYTES)',
      [],
      function () {
        this.set(inFlightBytes());
      },
    ),
    receiveMaximum: registry.gauge(
      'dmp_mqtt_receive_maximum',
      'MQTT 5 Receive Maximum of the connection: the most messages dmp-mqtt holds unacknowledged (dmp_mqtt_in_flight)',
    ),
  };
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
