import { BaseRpcContext } from '@nestjs/microservices';
import type { IPublishPacket } from 'mqtt';
import type { MqttDeliveryEnd } from './mqtt-message';

/** Everything the transport knows about one delivery; carried by {@link MqttContext}. */
export interface MqttDeliveryInfo {
  readonly packet: IPublishPacket;
  /** The subscription's topic filter (without `$share/{group}/`), e.g. `devices/+/telemetry`. */
  readonly subscription: string;
  readonly shareGroup: string;
  readonly clientId: string;
  /** `host:port` of the broker the message came from (one of several independent brokers, or the only one). */
  readonly broker: string;
  /** Epoch ms when the packet was taken from the socket / handed to the handler. */
  readonly receivedAt: number;
  readonly dispatchedAt: number;
  /** Aborted when this delivery can no longer be acknowledged (connection lost, shutdown timed out). */
  readonly signal: AbortSignal;
  readonly onEnd: (listener: (end: MqttDeliveryEnd) => void) => void;
}

/** The context argument (`@Ctx()`) of handlers served by `MqttIngestServer`. */
export class MqttContext extends BaseRpcContext<[MqttDeliveryInfo]> {
  private get info(): MqttDeliveryInfo {
    return this.args[0];
  }

  getTopic(): string {
    return this.info.packet.topic;
  }

  getPacket(): IPublishPacket {
    return this.info.packet;
  }

  getSubscription(): string {
    return this.info.subscription;
  }

  getShareGroup(): string {
    return this.info.shareGroup;
  }

  getClientId(): string {
    return this.info.clientId;
  }

  /** `host:port` of the broker the message came from. */
  getBroker(): string {
    return this.info.broker;
  }

  /** True when the broker marked it as a redelivery (DUP flag). */
  isRedelivery(): boolean {
    return this.info.packet.dup;
  }

  getReceivedAt(): number {
    return this.info.receivedAt;
  }

  getDispatchedAt(): number {
    return this.info.dispatchedAt;
  }

  /** Aborted when the delivery can no longer be acknowledged: stop retrying, the broker will redeliver. */
  get signal(): AbortSignal {
    return this.info.signal;
  }

  /** Called once the PUBACK is sent, or the delivery is given up (connection lost, left for redelivery). */
  onEnd(listener: (end: MqttDeliveryEnd) => void): void {
    this.info.onEnd(listener);
  }
}
