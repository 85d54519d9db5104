/**
 * The command ledger end to end, against the real local stack: dmp-kernel and dmp-data run as real
 * processes; the test calls the kernel's gRPC Ingest like dmp-mqtt does; a rule fires a command to each
 * of five devices on the real MQTT broker, answered by the simulator's CommandResponder (ok at once,
 * an error, late, never) and by a hand-written MQTT 3.1.1 device (the `commandId` payload field). The
 * lifecycle is read back from the admin API, from `dmp commands`, and from ClickHouse (its own
 * database, dropped at the end). Own topics and groups (`dmp_commands_test_*`), own MQTT reply group.
 */
import { ClickHouseRepository } from '@dmp/clickhouse';
import { type CommandRecord, deviceCommandReplyTopic, type TelemetryRequest } from '@dmp/contracts';
import { readMetric, REPO_ROOT, stack, waitFor, type RunningApp } from '@dmp/testing';
import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { CommandResponder, type ReplyBehaviour } from '../tools/simulator/src/command-responder';
import {
  createPipelineResources,
  deleteKeys,
  pipelineNames,
  registerDevice,
  startPipeline,
  type Pipeline,
} from './support/rule-pipeline';

const names = pipelineNames('commands');
const { run, database } = names;
const ADMIN_TOKEN = `commands-e2e-${run}-admin-token`;
const COMMAND_TOPIC = 'dmp_commands_test_command';
const COMMAND_GROUP = 'dmp_commands_test_command';
/** Commands live 3 s; the late device answers after 5 s. */
const TTL_MS = 3_000;
const LATE_MS = 5_000;
const exec = promisify(execFile);

const dev = (name: ReplyBehaviour | 'v3') => `cmd-${run}-${name}`;
const BEHAVIOURS: ReplyBehaviour[] = ['ok', 'error', 'late', 'never'];

let counter = 0;
function press(deviceId: string, pressed = true): TelemetryRequest {
  const now = Date.now();
  return {
    deviceId,
    messageId: `${deviceId}-m${++counter}`,
    kind: 'KIND_TELEMETRY',
    ts: now,
    receivedAt: now,
    metrics: { pressed: { flag: pressed } },
  };
}

interface EventRow {
  command_id: string;
  version: string;
  transition: string;
  state: string;
  detail: string;
}

describe('the command ledger end to end', { timeout: 300_000 }, () => {
  let pipeline: Pipeline | undefined;
  let kernel: RunningApp | undefined;
  let responder: CommandResponder;
  let v3: MqttClient;
  let observer: MqttClient;
  const received: { deviceId: string; commandId: string; traceparent?: string; expiry?: number }[] = [];
  const redis = new Redis(stack.redis.url, { lazyConnect: true });
  const clickhouse = new ClickHouseRepository({ ...stack.clickhouse, database });
  /** The command id each device got, once it got one. */
  const ids = new Map<string, string>();

  const admin = (method: string, path: string) =>
    fetch(`${kernel!.baseUrl}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  const command = async (id: string): Promise<CommandRecord> => {
    const response = await admin('GET', `/commands/${id}`);
    assert.equal(response.status, 200);
    return (await response.json()) as CommandRecord;
  };
  const stateOf = async (id: string) => (await command(id)).state;
  const ingest = (messages: TelemetryRequest[]) => pipeline!.ingest(messages);
  const events = (id: string) =>
    clickhouse.query<EventRow>(
      `SELECT command_id, toString(version) AS version, transition, state, detail
       FROM command_events FINAL WHERE command_id = '${id}' ORDER BY version`,
    );
  const cli = async (...args: string[]) =>
    (
      await exec(process.execPath, [join(REPO_ROOT, 'dist/tools/cli/src/main.js'), 'commands', ...args], {
        env: {
          ...process.env,
          DMP_KERNEL_URL: kernel!.baseUrl,
          ADMIN_TOKEN,
          CLICKHOUSE_URL: stack.clickhouse.url,
          CLICKHOUSE_DATABASE: database,
        },
      })
    ).stdout;

  before(async () => {
    await createPipelineResources(names, {
      topics: { [COMMAND_TOPIC]: 'FIFO' },
      groups: { [COMMAND_GROUP]: 'orderly' },
    });
    await redis.connect();
    for (const name of [...BEHAVIOURS, 'v3'] as const)
      await registerDevice(redis, dev(name), {
        tenantId: `tenant-${run}`,
        productId: '',
        siteId: 'plant-a',
        tags: {},
      });

    // The simulator's responder answers for the four simulated devices, each with its behaviour.
    responder = new CommandResponder({
      url: stack.mqtt.url,
      clientId: `commands-e2e-sim-${run}`,
      owns: (id) => BEHAVIOURS.some((b) => dev(b) === id),
      behaviour: (id) => id.slice(`cmd-${run}-`.length) as ReplyBehaviour,
      errorRatio: 0,
      lateRatio: 0,
      neverRatio: 0,
      lateMs: LATE_MS,
    });
    await responder.start();
    // What reaches the devices (MQTT 5 properties included), seen from a separate subscriber.
    observer = await mqtt.connectAsync(stack.mqtt.url, {
      protocolVersion: 5,
      clientId: `commands-e2e-obs-${run}`,
    });
    observer.on('message', (topic, payload, packet) => {
      const deviceId = topic.split('/')[1];
      if (!deviceId.startsWith(`cmd-${run}-`)) return;
      const body = JSON.parse(payload.toString()) as { commandId: string };
      const traceparent = packet.properties?.userProperties?.traceparent;
      received.push({
        deviceId,
        commandId: body.commandId,
        ...(typeof traceparent === 'string' ? { traceparent } : {}),
        ...(packet.properties?.messageExpiryInterval !== undefined
          ? { expiry: packet.properties.messageExpiryInterval }
          : {}),
      });
      ids.set(deviceId, body.commandId);
    });
    await observer.subscribeAsync('devices/+/command', { qos: 1 });
    // An MQTT 3.1.1 device: no correlation data, so it names the command in its reply's payload.
    v3 = await mqtt.connectAsync(stack.mqtt.url, { protocolVersion: 4, clientId: `commands-e2e-v3-${run}` });
    v3.on('message', (_topic, payload) => {
      const { commandId } = JSON.parse(payload.toString()) as { commandId: string };
      void v3.publishAsync(deviceCommandReplyTopic(dev('v3')), JSON.stringify({ commandId, status: 'ok' }), {
        qos: 1,
      });
    });
    await v3.subscribeAsync(`devices/${dev('v3')}/command`, { qos: 1 });

    pipeline = await startPipeline(names, {
      rules: {
        'valve.yaml': `rules:
  - id: press-valve
    when: msg.metrics.pressed == true
    actions:
      - command: { name: valve.open, params: { by: '{{ device.id }}' }, ttl: ${TTL_MS / 1000}s }
`,
      },
      env: { ROCKETMQ_TOPIC_COMMAND: COMMAND_TOPIC },
      data: { COMMAND_CONSUMER_GROUP: COMMAND_GROUP, COMMAND_BATCH_MAX_WAIT_MS: '50' },
      kernel: {
        KERNEL_ALARM_SWEEP_MS: '100',
        KERNEL_COMMAND_REPLY_GROUP: `commands-e2e-${run}`,
        KERNEL_COMMAND_MAX_RESENDS: '1',
        ADMIN_TOKEN,
      },
    });
    kernel = pipeline.kernel;
    console.log(
      `commands e2e: run ${run}, database ${database}, logs .stack/logs/tests/commands-${run}-*.log`,
    );
  });

  after(async () => {
    await pipeline?.stop();
    await Promise.allSettled([responder?.stop(), v3?.endAsync(), observer?.endAsync()]);
    await deleteKeys(redis, `dmp:device:cmd-${run}-*`, `${names.namespace}:*`);
    await redis.quit();
    await clickhouse.command(`DROP DATABASE IF EXISTS ${database}`).catch(() => undefined);
    await clickhouse.close();
  });

  it('sends each device a command with its id as correlation, its ttl as MQTT message expiry, in the rule trace', async () => {
    const outcomes = await ingest([...BEHAVIOURS, 'v3'].map((b) => press(dev(b as ReplyBehaviour))));
    assert.deepEqual(
      outcomes.filter((o) => !o.accepted),
      [],
    );
    await waitFor('a command to every device', () => ids.size === 5);
    for (const r of received) {
      assert.match(r.commandId, /^cmd-[0-9a-f]{20}$/);
      assert.ok(r.expiry !== undefined && r.expiry >= 1 && r.expiry <= TTL_MS / 1000, `expiry ${r.expiry}`);
      const record = await command(r.commandId);
      assert.equal(record.deviceId, r.deviceId);
      assert.equal(record.ruleId, 'press-valve');
      assert.equal(record.name, 'valve.open');
      assert.deepEqual(JSON.parse(record.paramsJson), { by: r.deviceId });
      assert.equal(record.ttlMs, TTL_MS);
      if (r.traceparent)
        assert.equal(record.traceId, r.traceparent.split('-')[1], 'the rule trace continues');
    }
  });

  it('ends replied, failed or expired as the device answers, including over MQTT 3.1.1', async () => {
    const id = (b: ReplyBehaviour | 'v3') => ids.get(dev(b))!;
    await waitFor('the ok command replied', async () => (await stateOf(id('ok'))) === 'replied');
    await waitFor('the 3.1.1 command replied', async () => (await stateOf(id('v3'))) === 'replied');
    await waitFor('the error command failed', async () => (await stateOf(id('error'))) === 'failed');
    await waitFor('the unanswered command expired', async () => (await stateOf(id('never'))) === 'expired', {
      timeoutMs: TTL_MS + 10_000,
    });
    await waitFor('the late command expired', async () => (await stateOf(id('late'))) === 'expired', {
      timeoutMs: TTL_MS + 10_000,
    });
    const failed = await command(id('error'));
    assert.equal(failed.reply?.code, 'E_SIMULATED');
    assert.equal(failed.sends, 1);
    const replied = await command(id('ok'));
    assert.equal(replied.reply?.status, 'ok');
    assert.deepEqual(JSON.parse(replied.reply?.resultJson ?? ''), { applied: 'valve.open' });
  });

  it('has one trace from the rule that fired to the device reply', async () => {
    const record = await command(ids.get(dev('ok'))!);
    const operations = await waitFor(
      'the reply span in the trace of the rule evaluation',
      async () => {
        const response = await fetch(`${stack.jaegerQueryUrl}/api/traces/${record.traceId}`);
        if (!response.ok) return undefined;
        const body = (await response.json()) as { data?: { spans: { operationName: string }[] }[] };
        const names = new Set(body.data?.[0]?.spans.map((span) => span.operationName));
        return names.has('process devices/+/command/reply') && names;
      },
      { timeoutMs: 30_000, intervalMs: 1_000 },
    );
    for (const name of ['evaluate rules', 'send devices/+/command', 'process devices/+/command/reply'])
      assert.ok(operations.has(name), `${name} in [${[...operations].join(', ')}]`);
  });

  it('records a late reply without leaving expired', async () => {
    const late = ids.get(dev('late'))!;
    const rows = await waitFor(
      'the late reply in command_events',
      async () => {
        const rows = await events(late);
        return rows.some((r) => r.transition === 'late_reply') && rows;
      },
      { timeoutMs: LATE_MS + 15_000 },
    );
    assert.deepEqual(
      rows.map((r) => [r.transition, r.state]),
      [
        ['queued', 'queued'],
        ['sent', 'sent'],
        ['expired', 'expired'],
        ['late_reply', 'expired'],
      ],
    );
    assert.equal(await stateOf(late), 'expired');
  });

  it('stores every transition and the latest state in ClickHouse', async () => {
    const expected: Record<string, string[]> = {
      ok: ['queued', 'sent', 'replied'],
      error: ['queued', 'sent', 'failed'],
      never: ['queued', 'sent', 'expired'],
      v3: ['queued', 'sent', 'replied'],
    };
    for (const [name, transitions] of Object.entries(expected)) {
      const id = ids.get(dev(name as ReplyBehaviour))!;
      // The reply may overtake the `sent` record: the ledger then ignores the late `sent`.
      await waitFor(`${name}: its transitions in command_events`, async () => {
        const rows = await events(id);
        const got = rows.map((r) => r.transition);
        return got.at(-1) === transitions.at(-1) && got[0] === 'queued';
      });
      const versions = (await events(id)).map((r) => Number(r.version));
      assert.deepEqual(
        versions,
        versions.map((_, i) => i + 1),
        `${name}: one row per version`,
      );
    }
    const latest = await waitFor('the latest states in commands', async () => {
      const rows = await clickhouse.query<{ device_id: string; state: string; reply_code: string }>(
        `SELECT device_id, state, reply_code FROM commands FINAL WHERE device_id LIKE 'cmd-${run}-%' ORDER BY device_id`,
      );
      return rows.length === 5 && rows.every((r) => r.state !== 'queued' && r.state !== 'sent') && rows;
    });
    assert.deepEqual(
      Object.fromEntries(
        latest.map((r) => [r.device_id.slice(`cmd-${run}-`.length), [r.state, r.reply_code]]),
      ),
      {
        error: ['failed', 'E_SIMULATED'],
        late: ['expired', ''],
        never: ['expired', ''],
        ok: ['replied', ''],
        v3: ['replied', ''],
      },
    );
  });

  it('ignores duplicate replies and reports malformed ones, losing nothing else', async () => {
    const ok = ids.get(dev('ok'))!;
    const topic = deviceCommandReplyTopic(dev('ok'));
    const before = await readMetric(kernel!.baseUrl, 'dmp_kernel_command_replies_total', {
      outcome: 'invalid',
    });
    const probe = await mqtt.connectAsync(stack.mqtt.url, {
      protocolVersion: 5,
      clientId: `commands-e2e-dup-${run}`,
    });
    try {
      // A duplicate (the device says otherwise now): ignored, the command stays replied.
      await probe.publishAsync(topic, JSON.stringify({ status: 'error', code: 'E_LATE_MIND' }), {
        qos: 1,
        properties: { correlationData: Buffer.from(ok) },
      });
      await probe.publishAsync(topic, '{not json', { qos: 1 });
      await probe.publishAsync(topic, JSON.stringify({ commandId: ok, status: 'maybe' }), { qos: 1 });
      await probe.publishAsync(topic, JSON.stringify({ status: 'ok' }), { qos: 1 });
    } finally {
      await probe.endAsync();
    }
    await waitFor(
      'three malformed replies counted',
      async () =>
        (await readMetric(kernel!.baseUrl, 'dmp_kernel_command_replies_total', { outcome: 'invalid' })) >=
        before + 3,
    );
    await waitFor(
      'the duplicate counted',
      async () =>
        (await readMetric(kernel!.baseUrl, 'dmp_kernel_command_replies_total', { outcome: 'duplicate' })) >=
        1,
    );
    const record = await command(ok);
    assert.equal(record.state, 'replied');
    assert.equal(record.reply?.status, 'ok');
    // And the ledger goes on: a new press is answered as before.
    // (A rule fires on the edge: released, then pressed again.)
    await ingest([press(dev('ok'), false)]);
    await ingest([press(dev('ok'))]);
    const next = await waitFor('a second command to the ok device', () =>
      received.find((r) => r.deviceId === dev('ok') && r.commandId !== ok),
    );
    await waitFor('the second command replied', async () => (await stateOf(next.commandId)) === 'replied');
  });

  it('answers the API with 404 and 409 where a command cannot be shown or resent', async () => {
    assert.equal((await admin('GET', '/commands/cmd-unknown')).status, 404);
    const conflict = await admin('POST', `/commands/${ids.get(dev('ok'))!}/resend`);
    assert.equal(conflict.status, 409);
    assert.equal(((await conflict.json()) as { code: string }).code, 'DMP_ERR_COMMAND_NOT_RESENDABLE');
    assert.equal((await admin('GET', '/commands')).status, 400);
    const list = (await (await admin('GET', `/commands?deviceId=${dev('ok')}`)).json()) as {
      commands: CommandRecord[];
    };
    assert.equal(list.commands.length, 2);
  });

  it('resends through dmp commands under the same id; the device answers again without executing twice', async () => {
    const failed = ids.get(dev('error'))!;
    const executedBefore = responder.stats.executed;
    const out = await cli('resend', failed);
    assert.match(out, new RegExp(`command ${failed} queued again \\(resend 1\\)`));
    await waitFor('the resent command sent again and failed again', async () => {
      const record = await command(failed);
      return record.state === 'failed' && record.sends === 2 && record.resends === 1;
    });
    assert.equal(received.filter((r) => r.commandId === failed).length, 2, 'the same id sent twice');
    assert.equal(responder.stats.executed, executedBefore, 'deduplicated on the device: not executed again');
    assert.ok(responder.stats.repeated >= 1);
    // Bounded: KERNEL_COMMAND_MAX_RESENDS=1.
    await assert.rejects(cli('resend', failed), /409 DMP_ERR_COMMAND_NOT_RESENDABLE/);
    // `sent` may be overtaken by the reply (then it is not a transition of its own).
    await waitFor(
      'the resend in command_events',
      async () =>
        (await events(failed))
          .map((r) => r.transition)
          .filter((t) => t !== 'sent')
          .join(',') === 'queued,failed,resent,failed',
    );
  });

  it('lists and shows commands with dmp commands, history from ClickHouse included', async () => {
    const list = await cli('list', dev('error'));
    assert.match(list, /^COMMAND\s+STATE/m);
    assert.match(
      list,
      new RegExp(`^${ids.get(dev('error'))!}\\s+failed\\s+valve\\.open\\s+press-valve`, 'm'),
    );
    const show = await cli('show', ids.get(dev('late'))!);
    assert.match(show, /^state {5}expired$/m);
    assert.match(show, /^history$/m);
    assert.match(show, /late_reply +→ expired +\(ok\)/);
    const json = JSON.parse(await cli('show', ids.get(dev('ok'))!, '--json')) as CommandRecord & {
      events: { transition: string }[];
    };
    assert.equal(json.state, 'replied');
    assert.equal(json.events.at(-1)?.transition, 'replied');
  });
});
