import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from './env';
import { brokerAddress, mqttSection } from './sections';

const load = (env: Record<string, string | undefined>) => loadConfig({ mqtt: mqttSection }, env).mqtt;

const refusedFor = (env: Record<string, string>, fragment: string) =>
  assert.throws(
    () => load(env),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.problems.some((p) => p.startsWith('MQTT_URLS') && p.includes(fragment)),
    JSON.stringify(env),
  );

describe('MQTT_URL / MQTT_URLS', () => {
  it('is one broker by default, or the one MQTT_URL names', () => {
    assert.deepEqual(load({}).urls, ['mqtt://127.0.0.1:1883']);
    assert.deepEqual(load({ MQTT_URL: 'mqtts://emqx:8883' }).urls, ['mqtts://emqx:8883']);
    assert.equal(load({ MQTT_URL: 'mqtts://emqx:8883' }).url, 'mqtts://emqx:8883');
  });

  it('takes a list of independent brokers, in order, the first also as `url`', () => {
    const mqtt = load({ MQTT_URLS: ' mqtt://emqx-a:1884, mqtt://emqx-b:1884 ,mqtts://emqx-c' });
    assert.deepEqual(mqtt.urls, ['mqtt://emqx-a:1884', 'mqtt://emqx-b:1884', 'mqtts://emqx-c']);
    assert.equal(mqtt.url, 'mqtt://emqx-a:1884');
  });

  it('accepts MQTT_URL beside MQTT_URLS when it is one of them', () => {
    const mqtt = load({ MQTT_URL: 'mqtt://b:1883', MQTT_URLS: 'mqtt://a:1883,mqtt://b:1883' });
    assert.deepEqual(mqtt.urls, ['mqtt://a:1883', 'mqtt://b:1883']);
  });

  it('refuses an inconsistent, empty, malformed or repeating list, by name', () => {
    refusedFor({ MQTT_URL: 'mqtt://c:1883', MQTT_URLS: 'mqtt://a:1883,mqtt://b:1883' }, 'not one of');
    refusedFor({ MQTT_URLS: '' }, 'is empty');
    refusedFor({ MQTT_URLS: ' , ' }, 'is empty');
    refusedFor({ MQTT_URLS: 'mqtt://a:1883,tcp://b:1883' }, 'tcp://b:1883');
    refusedFor({ MQTT_URLS: 'mqtt://a:1883,mqtt://' }, 'mqtt://');
    // The same broker twice, even spelled differently, would double every command and every session.
    refusedFor({ MQTT_URLS: 'mqtt://a,mqtt://a:1883' }, 'a:1883 more than once');
  });

  it('names a broker by host and port, never by its credentials', () => {
    assert.equal(brokerAddress('mqtt://user:secret@emqx-a:1884'), 'emqx-a:1884');
    assert.equal(brokerAddress('mqtts://emqx-b'), 'emqx-b:8883');
    assert.equal(brokerAddress('mqtt://[::1]'), '[::1]:1883');
  });
});
