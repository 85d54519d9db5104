import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hopFigures, hopsPlan, hopsSummary, parseHops } from './analysis';

describe('parseHops', () => {
  it("keeps the chain's order and each hop once", () => {
    assert.deepEqual(parseHops('data, mqtt,data'), ['mqtt', 'data']);
    assert.deepEqual(parseHops('kernel'), ['kernel']);
  });

  it('names what it does not know', () => {
    assert.throws(
      () => parseHops('mqtt,clickhouse'),
      /unknown hop\(s\): clickhouse \(of mqtt, kernel, data\)/,
    );
    assert.throws(() => parseHops(' , '), /no hop named/);
  });
});

describe('hopsPlan', () => {
  it('sends fewer messages when quick, and the count asked for', () => {
    assert.ok(hopsPlan(true).messages < hopsPlan(false).messages);
    assert.equal(hopsPlan(true, { messages: 1_234 }).messages, 1_234);
  });
});

describe('hopFigures', () => {
  it("turns each process's CPU over the window into µs per message, and the app's into a rate per core", () => {
    // 40,000 messages in 10 s = 4,000 msg/s; dmp-kernel 3 s of CPU = 75 µs a message.
    const f = hopFigures({
      hop: 'kernel',
      messages: 40_000,
      seconds: 10,
      cpuSeconds: { 'dmp-kernel': 3, rocketmq: 2, bench: 1.2 },
    });
    assert.equal(f.app, 'dmp-kernel');
    assert.equal(f.msgPerSec, 4_000);
    assert.equal(f.appCpuMicrosPerMessage, 75);
    assert.equal(Math.round(f.appMsgPerSecPerCore), 13_333);
    assert.deepEqual(f.cpuMicrosPerMessage, { 'dmp-kernel': 75, rocketmq: 50, bench: 30 });
  });

  it('counts CPU per message whatever the window: a pause at the end lowers the rate only', () => {
    const paused = hopFigures({ hop: 'data', messages: 40_000, seconds: 20, cpuSeconds: { 'dmp-data': 3 } });
    assert.equal(paused.msgPerSec, 2_000);
    assert.equal(paused.appCpuMicrosPerMessage, 75);
  });

  it('has NaN, not Infinity, for a window without messages or without the app', () => {
    const empty = hopFigures({ hop: 'data', messages: 0, seconds: 5, cpuSeconds: { 'dmp-data': 0.5 } });
    assert.ok(Number.isNaN(empty.appCpuMicrosPerMessage));
    assert.ok(Number.isNaN(empty.appMsgPerSecPerCore));
    const gone = hopFigures({ hop: 'mqtt', messages: 100, seconds: 1, cpuSeconds: {} });
    assert.ok(Number.isNaN(gone.appCpuMicrosPerMessage));
  });
});

describe('hopsSummary', () => {
  it('keeps per hop its rate, its µs per message and its rate per core, with null for what is not a number', () => {
    const kernel = hopFigures({
      hop: 'kernel',
      messages: 40_000,
      seconds: 10,
      cpuSeconds: { 'dmp-kernel': 3 },
    });
    const data = hopFigures({ hop: 'data', messages: 0, seconds: 5, cpuSeconds: { 'dmp-data': 0.5 } });
    assert.deepEqual(hopsSummary([kernel, data]), {
      kernel: { msgPerSec: 4_000, appCpuMicrosPerMessage: 75, appMsgPerSecPerCore: 13_333 },
      data: { msgPerSec: 0, appCpuMicrosPerMessage: null, appMsgPerSecPerCore: null },
    });
  });
});
