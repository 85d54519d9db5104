/**
 * Every RocketMQ topic, consumer group and MQTT service account an app's configuration names — its
 * defaults and what docker/docker-compose.yml gives it — is provisioned by both the production
 * deployment (docker/rocketmq/ lists applied by rocketmq-init.sh, compose's `emqx-service-users`) and
 * the local stack (scripts/stack.sh, checked on the running servers). Neither broker creates them on
 * demand: a missing one is an app that cannot start, or messages that go nowhere.
 */
import { stack } from '@dmp/testing';
import { REPO_ROOT } from '@dmp/testing';
import mqtt from 'mqtt';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { loadDataConfig } from '../apps/dmp-data/src/config';
import { loadKernelConfig } from '../apps/dmp-kernel/src/config';
import { loadMqttConfig } from '../apps/dmp-mqtt/src/config';
import { DOCKER_DIR, environmentOf, filledEnv, readCompose, serviceAccounts } from './support/compose';

type TopicKey = keyof ReturnType<typeof loadKernelConfig>['rocketmq']['topics'];
/** What producers send to each topic: telemetry and alarms in message groups (FIFO), dead letters not. */
const TOPIC_TYPES: Record<TopicKey, 'FIFO' | 'NORMAL'> = {
  event: 'FIFO',
  snapshot: 'FIFO',
  alarm: 'FIFO',
  command: 'FIFO',
  deadLetter: 'NORMAL',
};

interface NamedGroup {
  app: string;
  group: string;
  /** Consumes a FIFO topic: the group must be orderly. */
  orderly: boolean;
  /** The app's own delivery limit: the broker's retry_max_times must not cut it short. */
  maxDeliveryAttempts: number;
}
interface Named {
  topics: Map<string, { type: string; by: string }>;
  groups: NamedGroup[];
  accounts: { app: string; username: string; password: string }[];
}

/** The secrets the apps require, so that their defaults can be loaded. */
const secrets = {
  ADMIN_TOKEN: 'provisioning-test-admin-token',
  MQTT_AUTH_HTTP_SECRET: 'provisioning-test-auth-secret',
};

/** What the three apps' configurations name, loaded from `env(app)`. */
function namedBy(env: (app: string) => Record<string, string>): Named {
  const named: Named = { topics: new Map(), groups: [], accounts: [] };
  const data = loadDataConfig(env('dmp-data'));
  const kernel = loadKernelConfig(env('dmp-kernel'));
  const edge = loadMqttConfig(env('dmp-mqtt'));
  for (const [app, config] of [
    ['dmp-data', data],
    ['dmp-kernel', kernel],
    ['dmp-mqtt', edge],
  ] as const)
    for (const [key, topic] of Object.entries(config.rocketmq.topics))
      named.topics.set(topic, { type: TOPIC_TYPES[key as TopicKey], by: `${app} ${key}` });
  named.groups.push(
    {
      app: 'dmp-data',
      group: data.data.consumerGroup,
      orderly: true,
      maxDeliveryAttempts: data.data.maxDeliveryAttempts,
    },
    {
      app: 'dmp-data',
      group: data.alarms.consumerGroup,
      orderly: true,
      maxDeliveryAttempts: data.alarms.maxDeliveryAttempts,
    },
    {
      app: 'dmp-data',
      group: data.commands.consumerGroup,
      orderly: true,
      maxDeliveryAttempts: data.commands.maxDeliveryAttempts,
    },
    {
      app: 'dmp-data',
      group: data.deadLetters.consumerGroup,
      orderly: false,
      // No limit of its own (it waits for ClickHouse): the broker's, before %DLQ%, must be days of retries.
      maxDeliveryAttempts: 100_000,
    },
    {
      app: 'dmp-kernel',
      group: kernel.rules.group,
      orderly: true,
      maxDeliveryAttempts: kernel.rules.maxDeliveryAttempts,
    },
  );
  for (const [app, account] of [
    ['dmp-kernel', kernel.mqtt],
    ['dmp-mqtt', edge.mqtt],
    ['dmp-mqtt (service account)', edge.edge.service],
  ] as const)
    if (account.username)
      named.accounts.push({ app, username: account.username, password: account.password ?? '' });
  return named;
}

/** A list of docker/rocketmq/ or scripts/stack/: whitespace-separated columns, `#` comments. */
const readList = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter(Boolean)
    .map((line) => line.split(/\s+/));

const compose = readCompose();
const vars = filledEnv();
const defaults = namedBy(() => secrets);
const deployed = namedBy((app) => environmentOf(compose, app, vars));
const all = {
  topics: new Map([...defaults.topics, ...deployed.topics]),
  groups: [...defaults.groups, ...deployed.groups],
  accounts: [...defaults.accounts, ...deployed.accounts],
};

describe('provisioning: what the apps name exists in docker/ and in the local stack', () => {
  it('names something at all (the checks below are not empty)', () => {
    assert.ok(all.topics.size >= 4 && all.groups.length >= 4 && deployed.accounts.length >= 2);
  });

  describe('docker/', () => {
    const init = readFileSync(join(DOCKER_DIR, 'rocketmq/rocketmq-init.sh'), 'utf8');
    const mounted = (variable: string, file: string) => {
      const target = new RegExp(`${variable}="\\$\\{${variable}:-([^}]+)\\}"`).exec(init)?.[1];
      assert.ok(target, `rocketmq-init.sh reads ${variable}`);
      assert.ok(
        compose.services['rocketmq-init'].volumes?.includes(`./rocketmq/${file}:${target}:ro`),
        `rocketmq-init mounts ./rocketmq/${file} where rocketmq-init.sh reads it (${target})`,
      );
      return readList(join(DOCKER_DIR, 'rocketmq', file));
    };

    it("creates every topic with its producers' message type (rocketmq-init, topics.txt)", () => {
      const listed = new Map(mounted('TOPICS_FILE', 'topics.txt').map(([topic, type]) => [topic, type]));
      for (const [topic, { type, by }] of all.topics)
        assert.equal(listed.get(topic), type, `topic ${topic} (${by}) in docker/rocketmq/topics.txt`);
    });

    it('creates every consumer group, orderly where it must be, with retries that do not cut the app short', () => {
      const listed = new Map(mounted('GROUPS_FILE', 'groups.txt').map((row) => [row[0], row]));
      for (const { app, group, orderly, maxDeliveryAttempts } of all.groups) {
        const row = listed.get(group);
        assert.ok(row, `group ${group} (${app}) in docker/rocketmq/groups.txt`);
        assert.equal(row[1], String(orderly), `group ${group}: orderly`);
        assert.ok(
          Number(row[2] ?? 16) >= maxDeliveryAttempts,
          `group ${group}: retry_max_times ${row[2] ?? 16} < ${maxDeliveryAttempts}`,
        );
      }
    });

    it('has an EMQX superuser for every account an app logs in with (emqx-service-users)', () => {
      const accounts = serviceAccounts(compose, vars);
      for (const { app, username, password } of deployed.accounts)
        assert.ok(
          accounts.some((a) => a.username === username && a.password === password && a.superuser),
          `${app} logs in as ${username}: not a superuser of emqx-service-users with the same password`,
        );
    });
  });

  describe('the local stack (scripts/stack.sh)', () => {
    let shown = '';
    before(async () => {
      // The stack's own check: it reads the broker back (StackAdmin show) and checks every listed topic's type.
      const { stdout } = await promisify(execFile)(
        'bash',
        [join(REPO_ROOT, 'scripts/stack.sh'), 'check', 'rocketmq'],
        {
          env: { ...process.env, DMP_STACK_DIR: stack.dir },
          maxBuffer: 16 * 1024 * 1024,
        },
      );
      shown = stdout;
    });

    it('has created every topic with its message type on the running broker', () => {
      for (const [topic, { type, by }] of all.topics)
        assert.match(shown, new RegExp(`topic ${topic} +.*message\\.type=${type}`), `topic ${topic} (${by})`);
    });

    it('has created every consumer group, orderly where it must be', () => {
      for (const { app, group, orderly } of all.groups)
        assert.match(shown, new RegExp(`group ${group} +orderly=${orderly}\\b`), `group ${group} (${app})`);
    });

    it("lets every account an app logs in with connect to the stack's MQTT broker", async () => {
      for (const { username, password } of all.accounts) {
        const client = await mqtt.connectAsync(stack.mqtt.url, {
          username,
          password,
          reconnectPeriod: 0,
          connectTimeout: 5_000,
        });
        assert.ok(client.connected, `${username} connected`);
        await client.endAsync();
      }
    });
  });
});
