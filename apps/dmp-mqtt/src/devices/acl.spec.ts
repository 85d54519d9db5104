import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  clientIdAllowed,
  deviceMayAccess,
  isDeviceUsername,
  isReservedDeviceId,
  isServiceClientId,
} from './acl';

describe('device ACL', () => {
  it('lets a device publish only on its own channels and reply topic', () => {
    for (const channel of ['telemetry', 'event', 'snapshot', 'heartbeat', 'command/reply'])
      assert.equal(deviceMayAccess('dev-1', 'publish', `devices/dev-1/${channel}`), true, channel);
    for (const topic of [
      'devices/dev-2/telemetry',
      'devices/dev-1/command',
      'devices/dev-2/command/reply',
      'devices/+/command/reply',
      'devices/dev-1/other',
      'devices/dev-1/telemetry/x',
      'devices/dev-1',
      'devices/+/telemetry',
      'devices/#',
      'devices/dev-10/telemetry',
      '$SYS/broker/load',
      'other/dev-1/telemetry',
      '',
    ])
      assert.equal(deviceMayAccess('dev-1', 'publish', topic), false, topic);
  });

  it('lets a device subscribe only to its own command topic, without wildcards', () => {
    assert.equal(deviceMayAccess('dev-1', 'subscribe', 'devices/dev-1/command'), true);
    for (const filter of [
      'devices/dev-1/#',
      'devices/+/command',
      'devices/dev-2/command',
      '#',
      '$share/g/devices/dev-1/command',
      'devices/dev-1/telemetry',
    ])
      assert.equal(deviceMayAccess('dev-1', 'subscribe', filter), false, filter);
  });

  it('requires the client id to be exactly the device id', () => {
    assert.equal(clientIdAllowed('dev-1', 'dev-1'), true);
    for (const clientId of ['dev-10', 'dev-1:2', 'dev-1-backup', 'DEV-1', '', 'dev'])
      assert.equal(clientIdAllowed('dev-1', clientId), false, clientId);
  });

  it('knows what can be a device username', () => {
    assert.equal(isDeviceUsername('sensor_01.a:b-c'), true);
    for (const name of ['', 'a b', 'x/y', 'dev#', 'ü', 'x'.repeat(65)])
      assert.equal(isDeviceUsername(name), false);
  });

  const service = {
    username: 'dmp-mqtt',
    clientIds: ['ingest-a'],
    clientIdPrefixes: ['dmp-mqtt-', 'dmp-cli-'],
    reservedIds: ['dmp-kernel', 'dmp-kernel-*'],
  };

  it('knows the service client ids', () => {
    for (const id of ['ingest-a', 'dmp-mqtt-host1', 'dmp-cli-replay-1a2b'])
      assert.equal(isServiceClientId(service, id), true, id);
    for (const id of ['dev-1', 'dmp-mqtt', 'ingest-ab', 'x-dmp-mqtt-1', ''])
      assert.equal(isServiceClientId(service, id), false, id);
  });

  it('reserves the names of service accounts and their client ids', () => {
    for (const id of ['dmp-mqtt', 'dmp-mqtt-host1', 'ingest-a', 'dmp-kernel', 'dmp-kernel-h-12', 'dmp-cli-x'])
      assert.equal(isReservedDeviceId(service, id), true, id);
    for (const id of ['dev-1', 'dmp-kernelx', 'dmp', 'my-dmp-mqtt'])
      assert.equal(isReservedDeviceId(service, id), false, id);
  });
});
