import { DEVICE_ID_PATTERN, deviceCommandTopic, parseDeviceTopic } from '@dmp/contracts';

/**
 * Who may do what on the broker — plain functions, the rules behind EMQX's HTTP authn/authz calls.
 *
 * Identity. A device logs in with username = its device id and password = its secret, and its MQTT
 * client id must be exactly its device id. Exactly, not "starts with": device ids may contain `-`, `.`,
 * `:` and `_`, so a prefix rule would let `dev-1` connect as client `dev-10` and take over that device's
 * session (a second connection with a client id closes the first).
 *
 * Topics. A device publishes only on its own channels, `devices/{ownId}/{telemetry|event|snapshot|heartbeat}`,
 * and subscribes only to its own `devices/{ownId}/command` — no wildcards, no shared subscriptions, no
 * other device's topics. Everything else is denied.
 */
export type MqttAction = 'publish' | 'subscribe';

export const isDeviceUsername = (username: string) => DEVICE_ID_PATTERN.test(username);

export const clientIdAllowed = (deviceId: string, clientId: string) => clientId === deviceId;

export function deviceMayAccess(deviceId: string, action: MqttAction, topic: string): boolean {
  if (action === 'publish') return parseDeviceTopic(topic)?.deviceId === deviceId;
  return topic === deviceCommandTopic(deviceId);
}
