/**
 * docker/ checked as far as this machine can without a Docker engine.
 *
 * Offline: the compose file's services, health checks and start order, every `${VAR}` defined or
 * required, each app's environment accepted by the app's own start-up validation, the files it mounts,
 * published ports (internal ones stay inside) and host names consistent with the apps' config,
 * Prometheus' config and alert rules (promtool), Grafana's provisioning, EMQX calling dmp-mqtt's auth
 * endpoints, the TLS certificate script.
 *
 * Run: image folders built from exactly what docker/app.Dockerfile copies (test/support/dockerfile.ts),
 * the three apps started from them as compose would (its environment, the image's entry point, user and
 * working directory, compose's volumes, compose's host names resolving to the local servers —
 * test/support/container.ts), RocketMQ provisioned by docker/rocketmq's own init script and lists,
 * Redis and ClickHouse reached with compose's users and passwords. Then a device message lands in
 * ClickHouse, a linkage command reaches the device, a rule changed through the admin API survives a
 * kernel restart, and every service's healthcheck command that can run here passes.
 */
import {
  applyEmqxEnvOverrides,
  dropDatabaseInBackground,
  emqxHttpSources,
  parseHocon,
  REPO_ROOT,
  stack,
  TEST_LOG_DIR,
  waitFor,
} from '@dmp/testing';
import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import assert from 'node:assert/strict';
import { execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import {
  chmodSync,
  chownSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { loadDataConfig } from '../apps/dmp-data/src/config';
import { loadKernelConfig } from '../apps/dmp-kernel/src/config';
import { loadMqttConfig } from '../apps/dmp-mqtt/src/config';
import {
  composeText,
  DOCKER_DIR,
  envExample,
  environmentOf,
  filledEnv,
  interpolate,
  readCompose,
  referencesIn,
  type ComposeService,
} from './support/compose';
import { runContainer, startContainer, type ContainerSpec, type Mount } from './support/container';
import { buildImages, type Image } from './support/dockerfile';

const dockerDir = DOCKER_DIR;
const read = (path: string) => readFileSync(join(dockerDir, path), 'utf8');
const compose = readCompose();
const { services } = compose;
const APPS = ['dmp-mqtt', 'dmp-kernel', 'dmp-data'] as const;
/** A test `.env`: .env.example with its secrets filled in, and a ClickHouse database of this run. */
const run = randomBytes(3).toString('hex');
const vars: Record<string, string> = { ...filledEnv(), CLICKHOUSE_DATABASE: `dmp_deploy_${run}` };

/** `host` of `scheme://user:pass@host:port/…` or `host:port`. */
const hostPort = (address: string) => {
  const url = new URL(address.includes('://') ? address : `tcp://${address}`);
  return { host: url.hostname, port: url.port };
};
/** Environment variables that name another service (URLs, endpoints). */
const ADDRESS = /(_URL|_ENDPOINTS|_ENDPOINT)$/;

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
      const env = environmentOf(compose, app, vars);
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
      const port = environmentOf(compose, 'dmp-mqtt', vars).HTTP_PORT;
      assert.ok(
        emqx.includes(`http://dmp-mqtt:${port}${path}`),
        `emqx.conf calls ${path} on dmp-mqtt's HTTP_PORT`,
      );
      const controller = readFileSync(
        join(REPO_ROOT, 'apps/dmp-mqtt/src/auth/mqtt-auth.controller.ts'),
        'utf8',
      );
      assert.ok(controller.includes(path.split('/').at(-1)!), `dmp-mqtt serves ${path}`);
    }
  });

  it('requires or defines every ${VAR} it uses, and documents each required one in .env.example', () => {
    const example = envExample();
    // Compose interpolates values (not comments): every string of the parsed file.
    const strings = (value: unknown): string[] =>
      typeof value === 'string'
        ? [value]
        : value && typeof value === 'object'
          ? Object.entries(value).flatMap(([key, v]) => [key, ...strings(v)])
          : [];
    for (const { name, operator } of strings(parse(composeText())).flatMap(referencesIn)) {
      if (operator === ':?' || operator === '?')
        assert.ok(name in example, `${name} is required: .env.example must list it`);
      else if (operator === '')
        assert.ok(example[name], `\${${name}} has no default and no value in .env.example`);
    }
  });

  it('publishes no internal port, MQTT over TLS for devices and the rest on a local address only', () => {
    const INTERNAL = new Set([
      '50051',
      '6379',
      '9000',
      '9876',
      '10911',
      '10909',
      '10912',
      '8080',
      '8081',
      '1883',
    ]);
    let tls = false;
    for (const [name, service] of Object.entries(services))
      for (const spec of service.ports ?? []) {
        const parts = interpolate(spec.replace(/\s*#.*/, ''), {}).split(':');
        const [address, , container] = parts.length === 3 ? parts : ['', ...parts];
        if (container === '8883') {
          tls = true;
          continue;
        }
        if (container === '1883') {
          assert.equal(address, '127.0.0.1', `${name}: plaintext MQTT only on the loopback`);
          continue;
        }
        assert.ok(!INTERNAL.has(container), `${name} publishes internal port ${container}`);
        assert.ok(
          spec.startsWith('${BIND_ADDRESS:-127.0.0.1}:') || address === '127.0.0.1',
          `${name}: ${spec}`,
        );
      }
    assert.ok(tls, 'EMQX publishes 8883');
    assert.ok(
      services.emqx.volumes?.includes('./tls:/opt/emqx/etc/certs/dmp:ro'),
      'EMQX mounts docker/tls (ca.pem, server.pem, server.key)',
    );
  });

  it('has each app reach services by their compose names and ports, after they are up', () => {
    for (const app of APPS) {
      const env = environmentOf(compose, app, vars);
      for (const [key, value] of Object.entries(env).filter(([key]) => ADDRESS.test(key))) {
        const { host } = hostPort(value.split(',')[0]);
        if (host === '0.0.0.0') continue; // a listen address
        assert.ok(services[host], `${app} ${key}: ${host} is no compose service`);
        assert.ok(services[app].depends_on?.[host], `${app} ${key}: does not wait for ${host}`);
      }
    }
    // Ports the apps listen on, as the others call them.
    const kernel = environmentOf(compose, 'dmp-kernel', vars);
    const edge = environmentOf(compose, 'dmp-mqtt', vars);
    assert.equal(hostPort(edge.KERNEL_GRPC_URL).port, hostPort(kernel.KERNEL_GRPC_URL).port, 'gRPC port');
    // MQTT: each app connects to a listener of emqx.conf (dmp-mqtt to its own, zone dmp_ingest).
    const listeners = (parseHocon(read('emqx/emqx.conf')).listeners ?? {}) as Record<
      string,
      Record<string, { bind?: string; zone?: string }>
    >;
    const tcp = Object.values(listeners.tcp ?? {});
    const listenerOf = (url: string) => tcp.find((l) => l.bind?.split(':').at(-1) === new URL(url).port);
    assert.ok(listenerOf(kernel.MQTT_URL), `dmp-kernel ${kernel.MQTT_URL}: no EMQX listener on that port`);
    assert.equal(listenerOf(edge.MQTT_URL)?.zone, 'dmp_ingest', `dmp-mqtt ${edge.MQTT_URL}: its own zone`);
    const scrape = parse(read('prometheus/prometheus.yml')) as {
      scrape_configs: { job_name: string; dns_sd_configs?: { names: string[]; port: number }[] }[];
    };
    for (const app of APPS) {
      const job = scrape.scrape_configs.find((c) => c.job_name === app);
      assert.equal(
        String(job?.dns_sd_configs?.[0]?.port),
        environmentOf(compose, app, vars).HTTP_PORT,
        `${app} scrape port`,
      );
    }
  });

  it('makes a local CA and a server certificate for EMQX with docker/tls/make-certs.sh', async () => {
    const out = mkdtempSync(join(tmpdir(), 'dmp-tls-'));
    try {
      await promisify(execFile)('bash', [join(dockerDir, 'tls/make-certs.sh'), out, 'mqtt.example.test']);
      const { stdout } = await promisify(execFile)('openssl', [
        'verify',
        '-CAfile',
        join(out, 'ca.pem'),
        join(out, 'server.pem'),
      ]);
      assert.match(stdout, /server\.pem: OK/);
      const { stdout: san } = await promisify(execFile)('openssl', [
        'x509',
        '-in',
        join(out, 'server.pem'),
        '-noout',
        '-ext',
        'subjectAltName',
      ]);
      for (const name of ['DNS:emqx', 'DNS:localhost', 'DNS:mqtt.example.test'])
        assert.ok(san.includes(name), name);
      assert.ok(existsSync(join(out, 'server.key')));
      assert.match(read('.gitignore'), /^tls\/\*$/m, 'certificates and keys are git-ignored');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

const onPath = (program: string) =>
  (process.env.PATH ?? '').split(':').some((dir) => dir && existsSync(join(dir, program)));

/** Healthchecks whose server cannot run on this machine, and why. Every other one must pass. */
const HEALTHCHECKS_SKIPPED: Record<string, string> = {
  emqx: 'EMQX is not installable here (Mosquitto stands in for it as emqx:1883/1884, without `emqx ctl`)',
  grafana: 'Grafana is not installable here (its dashboards are checked offline above)',
};

describe(
  'docker/ run from its images, with compose’s environment, against the local servers',
  { timeout: 900_000 },
  () => {
    const work = mkdtempSync(join(tmpdir(), 'dmp-deploy-'));
    chmodSync(work, 0o755);
    const hostsFile = join(work, 'hosts');
    const nodeModules = realpathSync(join(REPO_ROOT, 'node_modules'));
    const rocketmqVersion = /<rocketmq.version>(.*)<\/rocketmq.version>/.exec(
      readFileSync(join(REPO_ROOT, 'scripts/stack/rocketmq/pom.xml'), 'utf8'),
    )![1];
    const rocketmqLib = join(stack.dir, 'cache', `rocketmq-${rocketmqVersion}`, 'lib');
    const clickhouseUsers = join(stack.dir, 'conf/clickhouse/users.d');
    const clickhouseUserFile = join(clickhouseUsers, `dmp-deploy-${run}.xml`);
    const clickhouse = environmentOf(compose, 'clickhouse', vars);
    const redisUser = new URL(environmentOf(compose, 'dmp-kernel', vars).REDIS_URL);
    const adminToken = vars.DMP_ADMIN_TOKEN;
    const volumes = new Map<string, string>();
    const running = new Map<string, ChildProcess>();
    let images: Record<string, Image>;
    let initOutput = '';
    const redis = new Redis(stack.redis.url, { lazyConnect: true });

    /** compose's volumes of a service: its `./` files and folders, and named volumes (test folders). */
    const mountsOf = (service: string, imageRoot?: string): Mount[] =>
      (services[service].volumes ?? []).map((volume) => {
        assert.equal(typeof volume, 'string', `${service}: long volume syntax`);
        const [source, target, mode] = (volume as string).split(':');
        if (source.startsWith('./'))
          return { source: join(dockerDir, source), target, readOnly: mode === 'ro' };
        let dir = volumes.get(source);
        if (!dir) {
          dir = join(work, 'volumes', source);
          mkdirSync(dir, { recursive: true });
          // Docker fills a new named volume with what the image holds at the mount point.
          if (imageRoot && existsSync(imageRoot + target))
            execFileSync('cp', ['-a', `${imageRoot}${target}/.`, dir]);
          volumes.set(source, dir);
        }
        return { source: dir, target, readOnly: mode === 'ro' };
      });

    /** An app's container as compose runs it. */
    const appContainer = (app: string): ContainerSpec => {
      const image = images[app];
      const service = services[app];
      return {
        root: image.root,
        command: service.entrypoint ?? [...image.entrypoint, ...(service.command ?? [])],
        workdir: image.workdir,
        env: { ...image.env, ...environmentOf(compose, app, vars) },
        user: image.user,
        hostsFile,
        mounts: mountsOf(app, image.root),
      };
    };

    /** A server's container: this machine's userland stands in for its image. */
    const serverContainer = (service: string, command: string[]): ContainerSpec => {
      const root = join(work, 'images', service);
      mkdirSync(root, { recursive: true });
      chmodSync(root, 0o755);
      return {
        root,
        command,
        workdir: '/',
        env: environmentOf(compose, service, vars),
        hostsFile,
        mounts: mountsOf(service),
      };
    };

    /** A service's healthcheck command, in its container (Docker runs it there, with its environment). */
    const healthcheck = async (service: string) => {
      const test = services[service].healthcheck?.test;
      assert.ok(Array.isArray(test), `${service}: healthcheck`);
      const [kind, ...rest] = test.map((part) => interpolate(part, vars));
      const argv = kind === 'CMD-SHELL' ? ['/bin/sh', '-c', rest.join(' ')] : rest;
      const spec = (APPS as readonly string[]).includes(service)
        ? { ...appContainer(service), command: argv }
        : serverContainer(service, argv);
      return runContainer(spec, [nodeModules], 30_000);
    };

    /** Compose's fixed ports (HTTP_PORT, gRPC) must be free here: another process would answer instead. */
    const portsFree = async (app: string) => {
      const env = environmentOf(compose, app, vars);
      const ports = [
        env.HTTP_PORT,
        ...Object.values(env)
          .filter((v) => v.startsWith('0.0.0.0:'))
          .map((v) => v.split(':')[1]),
      ];
      for (const port of ports)
        for (const host of ['127.0.0.1', '0.0.0.0'])
          if (
            !(await new Promise<boolean>((done) => {
              const server = createServer();
              server.once('error', () => done(false));
              server.listen(Number(port), host, () => server.close(() => done(true)));
            }))
          )
            return false;
      return true;
    };
    const start = async (app: string) => {
      await waitFor(`compose's ports of ${app} free on this machine`, () => portsFree(app), {
        timeoutMs: 300_000,
        intervalMs: 2_000,
      });
      mkdirSync(TEST_LOG_DIR, { recursive: true });
      const log = createWriteStream(join(TEST_LOG_DIR, `deploy-${run}-${app}.log`), { flags: 'a' });
      const child = startContainer(appContainer(app), [nodeModules]);
      child.stdout!.pipe(log);
      child.stderr!.pipe(log);
      running.set(app, child);
      let exited: number | null | undefined;
      child.once('exit', (code) => (exited = code));
      const alive = () => {
        if (exited !== undefined)
          throw new Error(`${app} exited with ${exited}; see ${TEST_LOG_DIR}/deploy-${run}-${app}.log`);
      };
      // What the healthcheck asks, polled cheaply first: each healthcheck run is a container and a Node.
      await waitFor(
        `${app} /health`,
        async () => {
          alive();
          return (await fetch(`${http(app)}/health`)).ok;
        },
        { timeoutMs: 120_000, intervalMs: 250 },
      );
      await waitFor(
        `${app} healthy by its compose healthcheck`,
        async () => {
          alive();
          return (await healthcheck(app)).code === 0;
        },
        { timeoutMs: 120_000, intervalMs: 1_000 },
      );
    };
    const stop = async (app: string, signal: NodeJS.Signals = 'SIGTERM') => {
      const child = running.get(app);
      running.delete(app);
      if (!child || child.exitCode !== null) return;
      const exited = new Promise((done) => child.once('exit', done));
      child.kill(signal);
      await exited;
    };
    const http = (app: string) => `http://127.0.0.1:${environmentOf(compose, app, vars).HTTP_PORT}`;
    const admin = async (app: string, method: string, path: string, body?: unknown) => {
      const response = await fetch(`${http(app)}${path}`, {
        method,
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
      return JSON.parse(text) as unknown;
    };
    /** ClickHouse over HTTP as compose's user. */
    const query = async (sql: string) => {
      const url = new URL(stack.clickhouse.url);
      url.searchParams.set('user', clickhouse.CLICKHOUSE_USER);
      url.searchParams.set('password', clickhouse.CLICKHOUSE_PASSWORD);
      const response = await fetch(url, { method: 'POST', body: sql });
      const text = await response.text();
      if (!response.ok) throw new Error(`ClickHouse: ${response.status} ${text}`);
      return text.trim();
    };

    /** Redis and ClickHouse with compose's users and passwords. */
    const composeUsers = async () => {
      // Redis: compose's ACL user, added to the local Redis (its other users untouched).
      await redis.connect();
      await redis.call(
        'ACL',
        'SETUSER',
        redisUser.username,
        'reset',
        'on',
        `>${decodeURIComponent(redisUser.password)}`,
        '~*',
        '&*',
        '+@all',
      );
      // ClickHouse: compose's user and password, as a users.d file of the local server (reloaded by itself).
      mkdirSync(clickhouseUsers, { recursive: true });
      const xml = (s: string) => s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
      writeFileSync(
        clickhouseUserFile,
        `<yandex><users><${clickhouse.CLICKHOUSE_USER}><password>${xml(clickhouse.CLICKHOUSE_PASSWORD)}</password>` +
          `<networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota>` +
          `</${clickhouse.CLICKHOUSE_USER}></users></yandex>\n`,
      );
      await waitFor(
        'ClickHouse login as compose’s user',
        async () => (await query('SELECT 1').catch(() => '')) === '1',
        {
          timeoutMs: 60_000,
          intervalMs: 500,
        },
      );
    };

    const rocketmqInit = async () => {
      // RocketMQ: the rocketmq-init service, its script and lists as compose mounts them. Its image's
      // mqadmin is the same admin tool from the local stack's RocketMQ jars.
      const init = serverContainer('rocketmq-init', services['rocketmq-init'].entrypoint!);
      const home = '/home/rocketmq';
      mkdirSync(join(init.root, home, 'rocketmq/bin'), { recursive: true });
      chownSync(join(init.root, home), 3000, 3000);
      writeFileSync(
        join(init.root, home, 'rocketmq/bin/mqadmin'),
        [
          '#!/bin/sh',
          `exec java $JAVA_OPT_EXT -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Duser.home=${home} ` +
            '--add-opens java.base/java.lang=ALL-UNNAMED --add-opens java.base/java.nio=ALL-UNNAMED ' +
            '--add-opens java.base/java.util=ALL-UNNAMED --add-exports java.base/sun.nio.ch=ALL-UNNAMED ' +
            `-Drmq.logback.configurationFile=rmq.tools.logback.xml -cp '${rocketmqLib}/*' ` +
            'org.apache.rocketmq.tools.command.MQAdminStartup "$@"',
          '',
        ].join('\n'),
      );
      // The apache/rocketmq image runs as uid 3000 with ROCKETMQ_HOME set.
      const result = await runContainer(
        { ...init, user: '3000:3000', env: { ...init.env, ROCKETMQ_HOME: `${home}/rocketmq` } },
        [rocketmqLib],
        600_000,
      );
      initOutput = result.output;
      assert.equal(result.code, 0, `rocketmq-init failed:\n${result.output}`);
    };

    before(async () => {
      // compose's service names resolve to this machine, where the local servers listen.
      writeFileSync(hostsFile, `127.0.0.1 localhost ${Object.keys(services).join(' ')}\n::1 localhost\n`);
      const builds = Object.fromEntries(
        Object.entries(services)
          .filter(([, s]) => s.build)
          .map(([name, s]) => [name, s.build?.args ?? {}]),
      );
      mkdirSync(join(work, 'build'));
      // The image build (mostly the monorepo's compile), the users of Redis and ClickHouse and
      // rocketmq-init (a JVM per topic and group, mostly waiting) need nothing of one another: side by side.
      // (The build's copies block the event loop: the other two start first.)
      const [, , built] = await Promise.all([
        rocketmqInit(),
        composeUsers(),
        buildImages({
          dockerfile: join(REPO_ROOT, services['dmp-kernel'].build!.dockerfile!),
          context: join(dockerDir, services['dmp-kernel'].build!.context!),
          outDir: join(work, 'build'),
          builds,
          hostPaths: [nodeModules],
        }),
      ]);
      images = built;

      // Start order of depends_on: data and kernel, then dmp-mqtt once the kernel is healthy.
      await Promise.all([start('dmp-data'), start('dmp-kernel')]);
      await start('dmp-mqtt');
    });

    after(async () => {
      // Side by side. Nothing is in flight any more: SIGKILL spares dmp-data's drain (≈ 15 s: its four
      // consumers wait out their long polls in turn); a graceful stop is tested with the kernel's restart.
      await Promise.all(
        [...running.keys()].map((app) => stop(app, app === 'dmp-data' ? 'SIGKILL' : 'SIGTERM')),
      );
      await redis.call('ACL', 'DELUSER', redisUser.username).catch(() => undefined);
      redis.disconnect();
      rmSync(clickhouseUserFile, { force: true });
      dropDatabaseInBackground(vars.CLICKHOUSE_DATABASE);
      rmSync(work, { recursive: true, force: true });
    });

    it('builds each image from what app.Dockerfile copies: the entry point, production packages only, the rule set', () => {
      const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
        devDependencies: Record<string, string>;
        dependencies: Record<string, string>;
      };
      for (const [name, image] of Object.entries(images)) {
        assert.match(
          image.base,
          new RegExp(`^node:${process.versions.node.split('.')[0]}-`),
          `${name}: Node of the base image`,
        );
        const main = readlinkSync(join(image.root, image.workdir, 'main.js'));
        assert.ok(existsSync(join(image.root, image.workdir, main)), `${name}: /app/main.js → ${main}`);
        const modules = readdirSync(join(image.root, image.workdir, 'node_modules'));
        assert.deepEqual(
          Object.keys(pkg.devDependencies).filter((d) => modules.includes(d)),
          [],
          `${name}: dev packages`,
        );
        assert.ok(
          Object.keys(pkg.dependencies).every((d) => modules.includes(d.split('/')[0])),
          `${name}: dependencies`,
        );
      }
      const ruleFiles = (dir: string) =>
        readdirSync(dir, { recursive: true, encoding: 'utf8' })
          .filter((f) => f.endsWith('.yaml'))
          .sort();
      assert.deepEqual(
        ruleFiles(join(images['dmp-kernel'].root, '/app/rules')),
        ruleFiles(join(REPO_ROOT, 'rules')).filter((f) => !f.startsWith('samples')),
      );
    });

    it("provisions RocketMQ with docker/rocketmq's own init script and lists", () => {
      for (const file of ['topics.txt', 'groups.txt'])
        for (const line of read(`rocketmq/${file}`).split('\n')) {
          const name = line.replace(/#.*/, '').trim().split(/\s+/)[0];
          if (name) assert.match(initOutput, new RegExp(`\\] (topic|group) ${name} `), `${file}: ${name}`);
        }
    });

    it('seeds the kernel-rules volume from the image and loads that rule set', async () => {
      const view = (await admin('dmp-kernel', 'GET', '/rules')) as { dir: string; files: { path: string }[] };
      const target = mountsOf('dmp-kernel').find(
        (m) => m.target === posix.resolve(images['dmp-kernel'].workdir, 'rules'),
      );
      assert.ok(target, 'compose mounts a volume where the kernel reads its rules');
      assert.equal(view.dir, target.target);
      assert.deepEqual(
        view.files.map((f) => f.path).sort(),
        readdirSync(target.source, { recursive: true, encoding: 'utf8' })
          .filter((f) => f.endsWith('.yaml'))
          .sort(),
      );
    });

    let device: MqttClient | undefined;
    const deviceId = `deploy-${run}`;
    const deviceSecret = randomBytes(16).toString('hex');
    const commands: { topic: string; payload: string }[] = [];
    after(async () => device?.endAsync());

    it('takes a device message through dmp-mqtt, dmp-kernel and RocketMQ into ClickHouse', async () => {
      await admin('dmp-mqtt', 'POST', '/admin/devices', {
        deviceId,
        secret: deviceSecret,
      });
      // Mosquitto stands in for EMQX (emqx:1883 for devices and dmp-kernel, 1884 for dmp-mqtt).
      device = await mqtt.connectAsync(stack.mqtt.url, {
        clientId: deviceId,
        protocolVersion: 5,
        reconnectPeriod: 0,
      });
      device.on('message', (topic, payload) => commands.push({ topic, payload: payload.toString() }));
      await device.subscribeAsync(`devices/${deviceId}/command`, { qos: 1 });
      const message = {
        messageId: `${deviceId}-1`,
        ts: Date.now(),
        seq: 1,
        metrics: { door_open: true, temperature: 21.5 },
      };
      await device.publishAsync(`devices/${deviceId}/telemetry`, JSON.stringify(message), { qos: 1 });
      const db = vars.CLICKHOUSE_DATABASE;
      await waitFor(
        'the message in telemetry_raw',
        async () =>
          (await query(`SELECT count() FROM ${db}.telemetry_raw WHERE device_id = '${deviceId}'`).catch(
            () => '0',
          )) === '1',
        { timeoutMs: 90_000, intervalMs: 500 },
      );
    });

    it('sends the linkage command of the default rule set (door open → light on) to the device', async () => {
      const command = await waitFor(
        'the light.set command',
        () => commands.find((c) => c.topic === `devices/${deviceId}/command`),
        {
          timeoutMs: 60_000,
          intervalMs: 200,
        },
      );
      assert.equal((JSON.parse(command.payload) as { name: string }).name, 'light.set');
    });

    it("answers EMQX's authentication calls only with the shared secret compose gives both", async () => {
      // As emqx.conf calls it, with the secret of the emqx service's environment (x-dmp-auth-secret).
      const emqx = emqxHttpSources(
        applyEmqxEnvOverrides(parseHocon(read('emqx/emqx.conf')), environmentOf(compose, 'emqx', vars)),
      );
      const secret = emqx.authn.headers['x-dmp-auth-secret'];
      assert.equal(emqx.authz.headers['x-dmp-auth-secret'], secret, 'both sources send the secret');
      assert.equal(secret, environmentOf(compose, 'dmp-mqtt', vars).MQTT_AUTH_HTTP_SECRET);
      const authn = async (
        username: string,
        password: string,
        headers: Record<string, string>,
        clientid = username,
      ) => {
        const response = await fetch(`${http('dmp-mqtt')}/auth/mqtt/authn`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers },
          body: JSON.stringify({ clientid, username, password, peerhost: '127.0.0.1' }),
        });
        return (await response.json()) as { result: string; is_superuser: boolean };
      };
      const withSecret = { 'x-dmp-auth-secret': secret };
      assert.deepEqual(await authn(deviceId, deviceSecret, withSecret), {
        result: 'allow',
        is_superuser: false,
      });
      assert.equal((await authn(deviceId, deviceSecret, {})).result, 'deny', 'without the shared secret');
      assert.equal(
        (await authn(deviceId, deviceSecret, { 'x-dmp-auth-secret': `${secret}x` })).result,
        'deny',
      );
      const edge = environmentOf(compose, 'dmp-mqtt', vars);
      // The service account logs in only with a service client id: dmp-mqtt's are `dmp-mqtt-{host}`.
      const replica = `${loadMqttConfig(edge).mqtt.clientIdPrefix}-replica-0`;
      assert.deepEqual(await authn(edge.MQTT_USERNAME, edge.MQTT_PASSWORD, withSecret, replica), {
        result: 'allow',
        is_superuser: true,
      });
    });

    it("passes every service's healthcheck command that can run here", async (t) => {
      const checked: string[] = [];
      for (const [name, service] of Object.entries<ComposeService>(services)) {
        const test = service.healthcheck?.test;
        if (!test || service.healthcheck?.disable) continue;
        if (HEALTHCHECKS_SKIPPED[name]) {
          t.diagnostic(`skipped ${name}: ${HEALTHCHECKS_SKIPPED[name]}`);
          continue;
        }
        // The command's program (wget in the server images) may be missing on this machine.
        const program = test[0] === 'CMD' ? test[1] : 'sh';
        if (!program.startsWith('/') && !(APPS as readonly string[]).includes(name) && !onPath(program)) {
          t.diagnostic(`skipped ${name}: ${program} is not installed on this machine`);
          continue;
        }
        const result = await healthcheck(name);
        assert.equal(result.code, 0, `${name} healthcheck ${JSON.stringify(test)}: ${result.output}`);
        checked.push(name);
      }
      assert.ok(checked.length >= 10, `checked ${checked.join(', ')}`);
      assert.deepEqual(
        Object.keys(HEALTHCHECKS_SKIPPED).filter((name) => !services[name]?.healthcheck),
        [],
        'skips only existing checks',
      );
    });

    it('keeps a rule changed through the admin API across a kernel restart (the kernel-rules volume)', async () => {
      const id = `deploy-test-${run}`;
      const before = (await admin('dmp-kernel', 'GET', '/rules')) as {
        files: { path: string; text: string }[];
      };
      const rule = [
        'rules:',
        `  - id: ${id}`,
        '    name: Deployment test',
        '    when: msg.metrics.temperature > 1000.0',
        '    actions:',
        '      - alarm:',
        '          severity: minor',
        "          message: 'deployment test'",
        '',
      ].join('\n');
      await admin('dmp-kernel', 'PUT', '/rules', {
        files: [...before.files, { path: `${id}.yaml`, text: rule }],
      });
      await stop('dmp-kernel');
      await start('dmp-kernel');
      const after = (await admin('dmp-kernel', 'GET', '/rules')) as { summary: { id: string }[] };
      assert.ok(
        after.summary.some((r) => r.id === id),
        'the rule is back after the restart',
      );
      assert.ok(existsSync(join(volumes.get('kernel-rules')!, `${id}.yaml`)), 'written to the volume');
    });
  },
);

function configFilesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((file) => /(^|[./])config\.ts$/.test(file))
    .map((file) => join(dir, file));
}
