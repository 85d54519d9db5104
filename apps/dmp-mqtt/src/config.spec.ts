import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { brokerEndpoints, loadMqttConfig } from './config';

const required = { ADMIN_TOKEN: 'admin-token-0123456789', MQTT_AUTH_HTTP_SECRET: 'auth-secret-0123456789' };

describe('brokers of dmp-mqtt', () => {
  it('is the one broker, under the replica id, unless MQTT_URLS names several', () => {
    const config = loadMqttConfig({ ...required, MQTT_CLIENT_ID: 'ingest-0' });
    assert.deepEqual(config.ingest.brokers, [
      { url: 'mqtt://127.0.0.1:1883', clientId: 'ingest-0', address: '127.0.0.1:1883' },
    ]);
  });

  it('gives each broker a client id of its own, stable by position, the first one unchanged', () => {
    assert.deepEqual(brokerEndpoints(['mqtt://a:1884', 'mqtt://b:1884', 'mqtts://c'], 'dmp-mqtt-0'), [
      { url: 'mqtt://a:1884', clientId: 'dmp-mqtt-0', address: 'a:1884' },
      { url: 'mqtt://b:1884', clientId: 'dmp-mqtt-0-b1', address: 'b:1884' },
      { url: 'mqtts://c', clientId: 'dmp-mqtt-0-b2', address: 'c:8883' },
    ]);
  });

  it("lets the service account connect under each broker's client id", () => {
    const config = loadMqttConfig({
      ...required,
      MQTT_CLIENT_ID: 'ingest-0',
      MQTT_URLS: 'mqtt://a:1884,mqtt://b:1884',
    });
    assert.deepEqual(config.edge.service.clientIds, ['ingest-0', 'ingest-0-b1']);
  });
});
