import { DmpSampler, extractTraceContext } from '@dmp/observability';
import { propagation, ROOT_CONTEXT, trace, type Context } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
  type Sampler,
} from '@opentelemetry/sdk-trace';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MqttContext } from '../transport/mqtt.context';
import type { MqttMessage } from '../transport/mqtt-message';
import { MessageTracing } from './message-tracing';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const DEVICE_SPAN_ID = '00f067aa0ba902b7';
const traceparent = (flags: '00' | '01') => `00-${TRACE_ID}-${DEVICE_SPAN_ID}-${flags}`;

/** The production sampler, with the ratio each test sets (the global provider is set once per process). */
let ratio = 1;
const sampler: Sampler = {
  shouldSample: (...args) => new DmpSampler(ratio).shouldSample(...args),
  toString: () => 'test',
};
const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ sampler, spanProcessors: [new SimpleSpanProcessor({ exporter })] });

describe('MessageTracing: a device does not decide what the platform records', () => {
  let tracing: MessageTracing;
  before(() => {
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    trace.setGlobalTracerProvider(provider);
    tracing = new MessageTracing();
  });
  after(() => provider.shutdown());

  const message: MqttMessage = {
    topic: 'devices/d1/telemetry',
    payload: Buffer.from('{}'),
    qos: 1,
    properties: { userProperties: {} },
  };
  function receive(flags: '00' | '01') {
    exporter.reset();
    let end: Parameters<MqttContext['onEnd']>[0] = () => undefined;
    const ctx = new MqttContext([
      {
        packet: {
          cmd: 'publish',
          topic: message.topic,
          payload: message.payload,
          qos: 1,
          dup: false,
          retain: false,
        },
        subscription: 'devices/+/telemetry',
        shareGroup: 'g',
        clientId: 'c',
        broker: 'emqx-a:1884',
        receivedAt: Date.now(),
        dispatchedAt: Date.now(),
        signal: new AbortController().signal,
        onEnd: (listener) => (end = listener),
      },
    ]);
    const spans = tracing.start(message, ctx, {
      carrier: { traceparent: traceparent(flags) },
      deviceId: 'd1',
    });
    end({ acked: true, at: Date.now() });
    return { spans, recorded: exporter.getFinishedSpans() };
  }

  it("ignores a device's sampled flag when the head sampler says no", () => {
    ratio = 0;
    const { spans, recorded } = receive('01');
    assert.deepEqual(recorded, [], 'nothing recorded');
    assert.equal(spans.span.isRecording(), false);
    // The next hop is not told to record either, and still carries the device's trace id.
    const next = spans.carrier().traceparent ?? '';
    assert.match(next, new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-00$`));
  });

  it("records a device's trace when the head sampler says yes, even if the device's flag says no", () => {
    ratio = 1;
    const { spans, recorded } = receive('00');
    assert.deepEqual(
      recorded.map((s) => [s.name, s.spanContext().traceId]),
      [
        ['receive devices/+/telemetry', TRACE_ID],
        ['process devices/+/telemetry', TRACE_ID],
      ],
      "the platform's spans join the device's trace",
    );
    assert.equal(recorded[0].parentSpanContext?.spanId, DEVICE_SPAN_ID);
    assert.match(spans.carrier().traceparent ?? '', /-01$/);
  });

  it('still follows the parent between DMP services (a context from the previous hop)', () => {
    ratio = 0;
    const fromPreviousHop: Context = extractTraceContext({ traceparent: traceparent('01') }, ROOT_CONTEXT);
    const span = trace.getTracer('test').startSpan('process dmp_telemetry', {}, fromPreviousHop);
    assert.equal(span.isRecording(), true);
    span.end();
  });
});
