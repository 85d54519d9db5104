import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mqttTraceProperties } from './trace-context';

describe('mqttTraceProperties', () => {
  it('carries traceparent and tracestate as MQTT 5 user properties', () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    assert.deepEqual(mqttTraceProperties({ traceparent, tracestate: 'dmp=1' }), {
      userProperties: { traceparent, tracestate: 'dmp=1' },
    });
    assert.deepEqual(mqttTraceProperties({ traceparent }), { userProperties: { traceparent } });
  });

  it('sends no user property list at all when there is no trace context', () => {
    assert.deepEqual(mqttTraceProperties({}), {});
    assert.deepEqual(mqttTraceProperties({ traceparent: '' }), {});
  });
});
