import {
  DEVICE_ID_PATTERN,
  deviceCommandReplyTopic,
  deviceCommandTopic,
  parseDeviceTopic,
} from '@dmp/contracts';

/**
 * Who may do what on the broker — plain functions, the rules behind EMQX's HTTP authn/authz calls.
 *
 * Identity. A device logs in with username = its device id and password = its secret, and its MQTT
 * client id must be exactly its device id. Exactly, not "starts with": device ids may contain `-`, `.`,
 * `:` and `_`, so a prefix rule would let `dev-1` connect as client `dev-10` and take over that device's
 * session (a second connection with a client id closes the first).
 *
 * Topics. A device publishes only on its own channels, `devices/{ownId}/{telemetry|event|snapshot|heartbeat}`,
 * and its answers to commands on `devices/{ownId}/command/reply`, and subscribes only to its own `devices/{ownId}/command` — no wildcards, no shared subscriptions, no
 * other device's topics. Everything else is denied.
 *
 * The service account (dmp-mqtt itself, `dmp dead-letters replay`) is a superuser, but only under a
 * service client id: this replica's MQTT_CLIENT_ID, or one starting with `{MQTT_CLIENT_ID_PREFIX}-` or a
 * MQTT_SERVICE_CLIENT_ID_PREFIXES entry. No device may take a name that is or could be a service
 * account's or its client id (DEVICE_RESERVED_IDS adds others, e.g. dmp-kernel's): a device whose client
 * id is a service client id would take that connection's session over, with its in-flight messages.
 */
export type MqttAction = 'publish' | 'subscribe';

export const isDeviceUsername = (username: string) => DEVICE_ID_PATTERN.test(username);

export const clientIdAllowed = (deviceId: string, clientId: string) => clientId === deviceId;

export function deviceMayAccess(deviceId: string, action: MqttAction, topic: string): boolean {
  if (action === 'publish')
    return parseDeviceTopic(topic)?.deviceId === deviceId || topic === deviceCommandReplyTopic(deviceId);
  return topic === deviceCommandTopic(deviceId);
}

/** The service account: its username and the client ids it connects with. */
export interface ServiceIdentity {
  username?: string;
  /** Client ids matched exactly (this replica's own). */
  clientIds: readonly string[];
  /** Client-id prefixes of service connections (the other replicas, the CLI). */
  clientIdPrefixes: readonly string[];
  /** Further names no device may take: exact, or a prefix when ending in `*`. */
  reservedIds: readonly string[];
}

export const isServiceClientId = (service: ServiceIdentity, clientId: string) =>
  service.clientIds.includes(clientId) || service.clientIdPrefixes.some((p) => clientId.startsWith(p));

/** A name no device may be registered or log in under. */
export function isReservedDeviceId(service: ServiceIdentity, id: string): boolean {
  if (id === service.username || isServiceClientId(service, id)) return true;
  return service.reservedIds.some((r) => (r.endsWith('*') ? id.startsWith(r.slice(0, -1)) : id === r));
}
