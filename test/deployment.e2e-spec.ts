/**
 * docker/ validated with what runs offline here (no Docker engine): the compose file's services, their
 * health checks and start order, each app's environment accepted by the app's own start-up validation,
 * the files it mounts, Prometheus' config, alert rules and their unit tests (promtool, installed with the
 * stack's Prometheus), Grafana's provisioning and dashboards, and EMQX calling dmp-mqtt's auth endpoints.
 */
import { REPO_ROOT } from '@dmp/testing';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { loadDataConfig } from '../apps/dmp-data/src/config';
import { loadKernelConfig } from '../apps/dmp-kernel/src/config';
import { loadMqttConfig } from '../apps/dmp-mqtt/src/config';

const dockerDir = join(REPO_ROOT, 'docker');
const read = (path: string) => readFileSync(join(dockerDir, path), 'utf8');

interface Service {
  image?: string;
  build?: unknown;
  environment?: Record<string, string | number | boolean>;
  healthcheck?: unknown;
  depends_on?: Record<string, { condition: string }>;
  volumes?: (string | { source?: string })[];
  restart?: string;
}
const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, Service> };
const { services } = compose;

/** `.env.example` as compose reads `.env`: the values a deployment starts from. */
const dotenv = Object.fromEntries(
  read('.env.example')
    .split('\n')
    .filter((line) => /^[A-Z_][A-Z0-9_]*=/.test(line))
    .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
);
/** Compose interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}. */
const interpolate = (value: string) =>
  value.replace(/\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}/g, (_, name: string, fallback?: string) => {
    const set = dotenv[name];
    if (set !== undefined && set !== '') return set;
    assert.ok(fallback !== undefined, `${name} has neither a value in .env.example nor a default`);
    return fallback;
  });
const environmentOf = (name: string) =>
  Object.fromEntries(
    Object.entries(services[name]?.environment ?? {}).map(([key, value]) => [
      key,
      interpolate(String(value)),
    ]),
  );

describe('docker/ deployment (validated offline)', () => {
  it('runs EMQX, RocketMQ (name server, broker, proxy), ClickHouse, Redis, Jaeger, Prometheus, Grafana and the three apps, each with a health check', () => {
    const expected = [
      'emqx',
      'rocketmq-namesrv',
      'rocketmq-broker',
      'rocketmq-proxy',
      'clickhouse',
      'redis',
      'jaeger',
      'prometheus',
      'grafana',
      'dmp-mqtt',
      'dmp-kernel',
      'dmp-data',
    ];
    assert.deepEqual(
      expected.filter((name) => !services[name]?.healthcheck),
      [],
      'services without a health check',
    );
  });

  it('starts each service after what it needs is healthy (or, for one-shot jobs, completed)', () => {
    for (const [name, service] of Object.entries(services))
      for (const [dependency, { condition }] of Object.entries(service.depends_on ?? {})) {
        assert.ok(services[dependency], `${name} depends on an unknown service ${dependency}`);
        // Traces are exported best-effort: the apps need not wait for Jaeger.
        const wanted =
          dependency === 'jaeger'
            ? 'service_started'
            : services[dependency].healthcheck
              ? 'service_healthy'
              : 'service_completed_successfully';
        assert.equal(condition, wanted, `${name} → ${dependency}`);
      }
  });

  it('gives each app an environment its own start-up validation accepts, with names the app knows', () => {
    const loaders = {
      'dmp-mqtt': loadMqttConfig,
      'dmp-kernel': loadKernelConfig,
      'dmp-data': loadDataConfig,
    };
    for (const [app, load] of Object.entries(loaders)) {
      const env = environmentOf(app);
      assert.doesNotThrow(() => load(env), `${app} refuses its compose environment`);
      // A misspelt name would be ignored silently: every name must appear in the configs that read them.
      const configSources = [
        readFileSync(join(REPO_ROOT, 'libs/config/src/sections.ts'), 'utf8'),
        ...configFilesUnder(join(REPO_ROOT, 'apps', app, 'src')).map((file) => readFileSync(file, 'utf8')),
      ].join('\n');
      assert.deepEqual(
        Object.keys(env).filter((name) => !configSources.includes(`${name}:`)),
        [],
        `${app}: variables no config reads`,
      );
    }
  });

  it('mounts only files that exist', () => {
    const missing = Object.entries(services).flatMap(([name, service]) =>
      (service.volumes ?? []).flatMap((volume) => {
        const source = typeof volume === 'string' ? volume.split(':')[0] : (volume.source ?? '');
        return source.startsWith('./') && !existsSync(join(dockerDir, source)) ? [`${name}: ${source}`] : [];
      }),
    );
    assert.deepEqual(missing, []);
  });

  it('has a Prometheus config, alert rules and rule unit tests that promtool accepts', async () => {
    const promtool = promisify(execFile);
    await promtool('promtool', [
      'check',
      'config',
      '--syntax-only',
      join(dockerDir, 'prometheus/prometheus.yml'),
    ]);
    const alerts = readdirSync(join(dockerDir, 'prometheus/alerts')).map((f) =>
      join(dockerDir, 'prometheus/alerts', f),
    );
    await promtool('promtool', ['check', 'rules', ...alerts]);
    const tests = readdirSync(join(dockerDir, 'prometheus/tests')).map((f) =>
      join(dockerDir, 'prometheus/tests', f),
    );
    const { stdout } = await promtool('promtool', ['test', 'rules', ...tests], {
      cwd: join(dockerDir, 'prometheus'),
    });
    assert.match(stdout, /SUCCESS/);
  });

  it('provisions Grafana with dashboards whose panels use the provisioned Prometheus data source', () => {
    const datasources = parse(read('grafana/provisioning/datasources/datasources.yml')) as {
      datasources: { uid: string; type: string }[];
    };
    const uids = new Set(datasources.datasources.map((d) => d.uid));
    const dashboards = readdirSync(join(dockerDir, 'grafana/dashboards'));
    assert.ok(dashboards.includes('dmp-overview.json'));
    const seen = new Set<string>();
    for (const file of dashboards) {
      const dashboard = JSON.parse(read(`grafana/dashboards/${file}`)) as {
        uid: string;
        panels: { title: string; datasource?: { uid?: string }; targets?: { expr?: string }[] }[];
      };
      assert.ok(!seen.has(dashboard.uid), `${file}: uid ${dashboard.uid} used twice`);
      seen.add(dashboard.uid);
      for (const panel of dashboard.panels.filter((p) => p.targets?.length)) {
        const uid = panel.datasource?.uid;
        assert.ok(
          uid && (uids.has(uid) || uid.startsWith('$')),
          `${file} › ${panel.title}: data source ${uid}`,
        );
      }
    }
  });

  it("has EMQX call dmp-mqtt's HTTP authentication and authorization endpoints", () => {
    const emqx = read('emqx/emqx.conf');
    for (const path of ['/auth/mqtt/authn', '/auth/mqtt/authz']) {
      assert.ok(emqx.includes(`http://dmp-mqtt:3001${path}`), `emqx.conf calls ${path}`);
      const controller = readFileSync(
        join(REPO_ROOT, 'apps/dmp-mqtt/src/auth/mqtt-auth.controller.ts'),
        'utf8',
      );
      assert.ok(controller.includes(path.split('/').at(-1)!), `dmp-mqtt serves ${path}`);
    }
  });
});

function configFilesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((file) => /(^|[./])config\.ts$/.test(file))
    .map((file) => join(dir, file));
}
