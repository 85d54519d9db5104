/**
 * The Helm chart (charts/dmp), checked without a cluster: `helm lint`, `helm template` with the
 * default values (plus the one value without a default, the Secret's name) and with a cluster values
 * file (charts/dmp/ci/), and every rendered manifest checked against the Kubernetes API's own types by
 * tools/k8s-validate (unknown or duplicated fields, wrong types, duplicate keys in keyed lists, kinds
 * the API does not have). Then what a user of the chart relies on: dmp-mqtt as a StatefulSet that
 * drains before it is killed, the headless gRPC Service dmp-mqtt reaches dmp-kernel through, the
 * PodDisruptionBudgets and autoscalers, probes on /health, every secret from the named Secret, each
 * app's environment accepted by the app's own start-up validation, and the alert rules, dashboards
 * and RocketMQ lists being those of docker/.
 *
 * Needs helm and k8s-validate in .tools/ (scripts/bootstrap.sh builds both with Go).
 */
import { REPO_ROOT } from '@dmp/testing';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { loadDataConfig } from '../apps/dmp-data/src/config';
import { loadKernelConfig } from '../apps/dmp-kernel/src/config';
import { loadMqttConfig } from '../apps/dmp-mqtt/src/config';
import { DOCKER_DIR, environmentOf, filledEnv, readCompose } from './support/compose';

const run = promisify(execFile);
const HELM = join(REPO_ROOT, '.tools/helm/bin/helm');
const VALIDATE = join(REPO_ROOT, '.tools/k8s-validate/k8s-validate');
const CHART = join(REPO_ROOT, 'charts/dmp');
const DEFAULT_VALUES = join(CHART, 'ci/default-values.yaml');
const CLUSTER_VALUES = join(CHART, 'ci/cluster-values.yaml');

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string } };
}
interface Probe {
  httpGet?: { path: string; port: string | number };
  tcpSocket?: { port: string | number };
}
interface Container {
  name: string;
  image: string;
  env?: EnvVar[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  terminationGracePeriodSeconds?: number;
  volumes?: { name: string; persistentVolumeClaim?: { claimName: string } }[];
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: Record<string, unknown> & {
    template?: { spec: PodSpec };
    selector?: { matchLabels?: Record<string, string> } & Record<string, string>;
  };
  data?: Record<string, string>;
}

async function helm(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(HELM, args, { maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** tools/k8s-validate on a YAML stream: its exit code and report. */
async function validate(text: string): Promise<{ code: number; stdout: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'dmp-chart-'));
  const file = join(dir, 'manifests.yaml');
  writeFileSync(file, text);
  try {
    const { stdout } = await run(VALIDATE, [file], { maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `helm template` output (must succeed), as text and as manifests. */
async function render(...args: string[]): Promise<{ text: string; manifests: Manifest[] }> {
  const result = await helm('template', 'dmp', CHART, ...args);
  assert.equal(result.code, 0, `helm template ${args.join(' ')} failed:\n${result.stderr}`);
  const manifests = parseAllDocuments(result.stdout)
    .map((doc) => doc.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null);
  return { text: result.stdout, manifests };
}

const find = (manifests: Manifest[], kind: string, name: string): Manifest => {
  const found = manifests.find((m) => m.kind === kind && m.metadata.name === name);
  assert.ok(found, `no ${kind} ${name} in the rendered chart`);
  return found;
};
const podSpec = (m: Manifest): PodSpec => {
  assert.ok(m.spec?.template, `${m.kind} ${m.metadata.name} has no pod template`);
  return m.spec.template.spec;
};
const appContainer = (m: Manifest): Container => {
  const container = podSpec(m).containers.find((c) => c.name === m.metadata.name);
  assert.ok(container, `${m.kind} ${m.metadata.name} has no container of its name`);
  return container;
};
const envValue = (c: Container, name: string) => c.env?.find((e) => e.name === name)?.value;

/**
 * The environment a container sees: secretKeyRef entries read from `secret` (each must name the Secret
 * `secretName`), and `$(VAR)` references expanded as the kubelet does.
 */
function containerEnv(
  c: Container,
  secretName: string,
  secret: Record<string, string>,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of c.env ?? []) {
    const ref = entry.valueFrom?.secretKeyRef;
    if (ref) {
      assert.equal(ref.name, secretName, `${c.name} ${entry.name}: read from Secret ${ref.name}`);
      assert.ok(ref.key in secret, `${c.name} ${entry.name}: key ${ref.key} is not one of the secret's keys`);
      env[entry.name] = secret[ref.key];
    } else {
      assert.equal(typeof entry.value, 'string', `${c.name} ${entry.name}: value is not a string`);
      env[entry.name] = (entry.value ?? '').replace(
        /\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g,
        (whole, name: string) => (name in env ? env[name] : whole),
      );
    }
  }
  return env;
}

/** A Secret with every key the values name, each a random value the apps accept. */
function secretFor(valuesFiles: string[]): Record<string, string> {
  type Values = { secrets?: { keys?: Record<string, string> } };
  const keys: Record<string, string> = {};
  for (const file of [join(CHART, 'values.yaml'), ...valuesFiles])
    Object.assign(keys, (parse(readFileSync(file, 'utf8')) as Values).secrets?.keys);
  return Object.fromEntries(Object.values(keys).map((key) => [key, randomBytes(16).toString('hex')]));
}

/** What the apps read as secrets: never a literal value in a manifest. */
const SECRET_VARIABLES = [
  'ADMIN_TOKEN',
  'MQTT_PASSWORD',
  'MQTT_AUTH_HTTP_SECRET',
  'CLICKHOUSE_PASSWORD',
  'DMP_REDIS_PASSWORD',
];

describe('Helm chart charts/dmp', () => {
  let standard: { text: string; manifests: Manifest[] };
  let cluster: { text: string; manifests: Manifest[] };

  before(async () => {
    for (const tool of [HELM, VALIDATE])
      assert.ok(
        existsSync(tool),
        `${tool} is missing: run scripts/bootstrap.sh (it builds helm and k8s-validate)`,
      );
    [standard, cluster] = await Promise.all([
      render('--values', DEFAULT_VALUES),
      render('--values', CLUSTER_VALUES),
    ]);
  });

  it('passes helm lint with the default and the cluster values', async () => {
    for (const values of [DEFAULT_VALUES, CLUSTER_VALUES]) {
      const result = await helm('lint', '--strict', CHART, '--values', values);
      assert.equal(result.code, 0, `helm lint --values ${values}:\n${result.stdout}\n${result.stderr}`);
      assert.match(result.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  it('renders only manifests that the Kubernetes API types accept', async () => {
    for (const { text, manifests } of [standard, cluster]) {
      const { code, stdout } = await validate(text);
      assert.equal(code, 0, `k8s-validate refused the rendered chart:\n${stdout}`);
      assert.match(stdout, new RegExp(`^${manifests.length} valid, 0 invalid$`, 'm'));
    }
  });

  it('has the schema check refuse what the API would refuse', async () => {
    const statefulSet = standard.text.split(/^---$/m).find((doc) => /^kind: StatefulSet$/m.test(doc));
    assert.ok(statefulSet);
    const cases: [string, string, RegExp][] = [
      [
        'an unknown field',
        statefulSet.replace('podManagementPolicy: Parallel', 'podManagementPolicy: Parallel\n  replica: 3'),
        /unknown field "spec\.replica"/,
      ],
      [
        'a wrong type',
        statefulSet.replace(/replicas: \d+/, 'replicas: two'),
        /cannot unmarshal string into .*replicas of type int32/,
      ],
      [
        'two env vars of one name',
        statefulSet.replace(
          /\n( +)- name: HTTP_HOST\n( +)value: (.*)\n/,
          (entry, dash: string, indent: string) => `${entry}${dash}- name: HTTP_HOST\n${indent}value: x\n`,
        ),
        /env: duplicate entries for key \[name="HTTP_HOST"\]/,
      ],
      [
        'an unknown kind',
        'apiVersion: apps/v1\nkind: StatefulSett\nmetadata: { name: x }\n',
        /apps\/v1, Kind=StatefulSett is not a kind of the Kubernetes API/,
      ],
    ];
    for (const [what, doc, reason] of cases) {
      assert.notEqual(doc, statefulSet, `${what}: the test's edit did not apply`);
      const { code, stdout } = await validate(doc);
      assert.equal(code, 1, `${what} was not refused: ${stdout}`);
      assert.match(stdout, /^INVALID /m);
      assert.match(stdout, reason, what);
    }
  });

  it('refuses to render without the name of the Secret holding the secrets', async () => {
    const result = await helm('template', 'dmp', CHART);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /existingSecret/);
    // Without the schema the templates refuse it too.
    const unchecked = await helm('template', 'dmp', CHART, '--skip-schema-validation');
    assert.notEqual(unchecked.code, 0);
    assert.match(unchecked.stderr, /secrets\.existingSecret is required/);
    // No secret value has a default: every secret variable of every container comes from the Secret.
    for (const { manifests } of [standard, cluster])
      for (const m of manifests.filter((m) => m.spec?.template))
        for (const c of podSpec(m).containers)
          for (const e of c.env ?? [])
            if (SECRET_VARIABLES.includes(e.name))
              assert.ok(
                e.valueFrom?.secretKeyRef,
                `${m.metadata.name} ${e.name} is not read from the Secret`,
              );
    assert.doesNotMatch(standard.text, /^kind: Secret$/m, 'the chart must not create a Secret');
  });

  it('runs dmp-mqtt as a StatefulSet that drains before it is killed', () => {
    const sts = find(standard.manifests, 'StatefulSet', 'dmp-mqtt');
    const governing = find(standard.manifests, 'Service', String(sts.spec?.serviceName));
    assert.equal(governing.spec?.clusterIP, 'None');
    const container = appContainer(sts);
    const drainMs = Number(envValue(container, 'MQTT_DRAIN_TIMEOUT_MS'));
    assert.ok(podSpec(sts).terminationGracePeriodSeconds! * 1000 >= drainMs + 10_000);
    assert.equal(envValue(container, 'MQTT_STOP_MODE'), 'keep-session');
    // EMQX's auth calls reach every running pod: a pod without Redis still answers from its cache.
    assert.equal(find(standard.manifests, 'Service', 'dmp-mqtt').spec?.publishNotReadyAddresses, true);
    // No MQTT_CLIENT_ID: the app's default `dmp-mqtt-<hostname>` is the pod's stable name.
    assert.equal(envValue(container, 'MQTT_CLIENT_ID'), undefined);
    assert.equal(
      find(standard.manifests, 'Deployment', 'dmp-kernel').kind,
      'Deployment',
      'dmp-kernel is a Deployment',
    );
    assert.ok(!standard.manifests.some((m) => m.kind === 'Deployment' && m.metadata.name === 'dmp-mqtt'));
    // A grace period shorter than the drain is refused.
    return helm(
      'template',
      'dmp',
      CHART,
      '--values',
      DEFAULT_VALUES,
      '--set',
      'mqtt.terminationGracePeriodSeconds=20',
    ).then((result) => {
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /terminationGracePeriodSeconds \(20 s\) must be at least/);
    });
  });

  it('reaches dmp-kernel through a headless Service, every pod address balanced per call', () => {
    const grpc = find(standard.manifests, 'Service', 'dmp-kernel-grpc');
    assert.equal(grpc.spec?.clusterIP, 'None');
    const kernel = find(standard.manifests, 'Deployment', 'dmp-kernel');
    assert.deepEqual(grpc.spec?.selector, kernel.spec?.selector?.matchLabels);
    const url = envValue(
      appContainer(find(standard.manifests, 'StatefulSet', 'dmp-mqtt')),
      'KERNEL_GRPC_URL',
    );
    assert.equal(url, 'dns:///dmp-kernel-grpc.default.svc:50051');
    assert.equal(envValue(appContainer(kernel), 'KERNEL_GRPC_URL'), '0.0.0.0:50051');
  });

  it('has a PodDisruptionBudget per app, autoscalers on CPU and backlog age, probes on /health', () => {
    for (const [kind, name] of [
      ['StatefulSet', 'dmp-mqtt'],
      ['Deployment', 'dmp-kernel'],
      ['Deployment', 'dmp-data'],
    ]) {
      const workload = find(standard.manifests, kind, name);
      const pdb = find(standard.manifests, 'PodDisruptionBudget', name);
      assert.deepEqual(pdb.spec?.selector?.matchLabels, workload.spec?.selector?.matchLabels);
      const container = appContainer(workload);
      assert.deepEqual(container.readinessProbe?.httpGet, { path: '/health', port: 'http' });
      // Liveness does not depend on Redis, RocketMQ or ClickHouse: an outage must not restart the pods.
      assert.ok(container.livenessProbe?.tcpSocket, `${name}: liveness probe`);
    }
    for (const name of ['dmp-kernel', 'dmp-data']) {
      const hpa = find(standard.manifests, 'HorizontalPodAutoscaler', name);
      assert.deepEqual(hpa.spec?.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name });
      const metrics = hpa.spec?.metrics as { type: string; resource?: { name: string } }[];
      assert.deepEqual(
        metrics.map((m) => m.type),
        ['Resource'],
      );
      const clusterHpa = find(cluster.manifests, 'HorizontalPodAutoscaler', name);
      const clusterMetrics = clusterHpa.spec?.metrics as {
        type: string;
        external?: { metric: { name: string; selector: { matchLabels: Record<string, string> } } };
      }[];
      assert.deepEqual(
        clusterMetrics.map((m) => m.type),
        ['Resource', 'External'],
      );
      assert.deepEqual(clusterMetrics[1].external?.metric, {
        name: 'dmp_rocketmq_backlog_age_seconds',
        selector: { matchLabels: { service: name } },
      });
      // The HPA owns the replica count.
      assert.equal(find(standard.manifests, 'Deployment', name).spec?.replicas, undefined);
    }
  });

  it("gives each app an environment that the app's own validation accepts, as compose does", () => {
    const compose = readCompose();
    const composeVars = filledEnv();
    const loaders = {
      'dmp-mqtt': loadMqttConfig,
      'dmp-kernel': loadKernelConfig,
      'dmp-data': loadDataConfig,
    };
    for (const [values, { manifests }, secretName] of [
      [[DEFAULT_VALUES], standard, 'dmp-secrets'],
      [[CLUSTER_VALUES], cluster, 'dmp-production'],
    ] as const) {
      const secret = secretFor([...values]);
      for (const [app, load] of Object.entries(loaders)) {
        const workload = manifests.find(
          (m) => ['StatefulSet', 'Deployment'].includes(m.kind) && m.metadata.name === app,
        );
        assert.ok(workload, app);
        const env = containerEnv(appContainer(workload), secretName, secret);
        assert.doesNotThrow(() => load(env), `${app} refuses the chart's environment (${values.join()})`);
        // Every variable compose sets, the chart sets too (tracing only when an endpoint is given).
        const composeEnv = environmentOf(compose, app, composeVars);
        const missing = Object.keys(composeEnv).filter(
          (name) =>
            !(name in env) && !(name === 'OTEL_EXPORTER_OTLP_ENDPOINT' && env.OTEL_ENABLED === 'false'),
        );
        assert.deepEqual(missing, [], `${app}: variables compose sets and the chart does not`);
      }
    }
    // The cluster values' settings reach the apps.
    const data = appContainer(find(cluster.manifests, 'Deployment', 'dmp-data'));
    assert.equal(envValue(data, 'CLICKHOUSE_CLUSTER'), 'dmp_cluster');
    assert.equal(
      envValue(appContainer(find(standard.manifests, 'Deployment', 'dmp-data')), 'CLICKHOUSE_CLUSTER'),
      undefined,
    );
    const kernel = find(cluster.manifests, 'Deployment', 'dmp-kernel');
    assert.equal(envValue(appContainer(kernel), 'KERNEL_RULES_DIR'), '/var/lib/dmp/rules');
    assert.deepEqual(podSpec(kernel).volumes, [
      { name: 'rules', persistentVolumeClaim: { claimName: 'dmp-kernel-rules' } },
    ]);
    assert.equal(podSpec(kernel).initContainers?.[0].name, 'seed-rules');
    const redisUrl = containerEnv(appContainer(kernel), 'dmp-production', {
      ...secretFor([CLUSTER_VALUES]),
      redis: 'r3d15',
    }).REDIS_URL;
    assert.equal(redisUrl, 'rediss://dmp:r3d15@redis-primary.redis.svc:6380');
  });

  it('renders a list of independent brokers as MQTT_URLS, which the apps accept', async () => {
    const brokers = [
      'emqx.brokers[0].ingestUrl=mqtts://emqx-a:8884,emqx.brokers[0].url=mqtts://emqx-a:8883',
      'emqx.brokers[1].ingestUrl=mqtts://emqx-b:8884,emqx.brokers[1].url=mqtts://emqx-b:8883',
    ].join(',');
    const { manifests } = await render('--values', DEFAULT_VALUES, '--set', brokers);
    const secret = secretFor([DEFAULT_VALUES]);
    const mqttEnv = containerEnv(
      appContainer(find(manifests, 'StatefulSet', 'dmp-mqtt')),
      'dmp-secrets',
      secret,
    );
    const kernelEnv = containerEnv(
      appContainer(find(manifests, 'Deployment', 'dmp-kernel')),
      'dmp-secrets',
      secret,
    );
    assert.equal(mqttEnv.MQTT_URL, undefined, 'one way to name the brokers at a time');
    assert.deepEqual(loadMqttConfig(mqttEnv).mqtt.urls, ['mqtts://emqx-a:8884', 'mqtts://emqx-b:8884']);
    assert.deepEqual(loadKernelConfig(kernelEnv).mqtt.urls, ['mqtts://emqx-a:8883', 'mqtts://emqx-b:8883']);
    // An entry without one of its URLs is refused by the schema, naming it.
    const incomplete = await helm(
      'template',
      'dmp',
      CHART,
      '--values',
      DEFAULT_VALUES,
      '--set',
      'emqx.brokers[0].ingestUrl=mqtt://emqx-a:1884',
    );
    assert.notEqual(incomplete.code, 0);
    assert.match(incomplete.stderr, /brokers\/0.*url/);
  });

  it('monitors with the alert rules, dashboards and RocketMQ lists of docker/', () => {
    const rules = find(standard.manifests, 'PrometheusRule', 'dmp-alerts');
    const alerts = parse(readFileSync(join(DOCKER_DIR, 'prometheus/alerts/dmp.yml'), 'utf8')) as {
      groups: unknown;
    };
    assert.deepEqual(rules.spec?.groups, alerts.groups);

    for (const app of ['dmp-mqtt', 'dmp-kernel', 'dmp-data']) {
      const monitor = find(standard.manifests, 'ServiceMonitor', app);
      const selected = standard.manifests.filter(
        (m) =>
          m.kind === 'Service' &&
          Object.entries(monitor.spec?.selector?.matchLabels ?? {}).every(
            ([k, v]) => m.metadata.labels?.[k] === v,
          ),
      );
      // One Service per app, so every replica is scraped once; the job label the rules select on.
      assert.deepEqual(
        selected.map((s) => s.metadata.name),
        [app],
      );
      const endpoints = monitor.spec?.endpoints as {
        port: string;
        relabelings: { targetLabel: string; replacement: string }[];
      }[];
      assert.equal(endpoints[0].port, 'http');
      assert.deepEqual(
        endpoints[0].relabelings.map((r) => [r.targetLabel, r.replacement]),
        [['job', app]],
      );
    }

    const dashboardFiles = readdirSync(join(DOCKER_DIR, 'grafana/dashboards')).filter((f) =>
      f.endsWith('.json'),
    );
    assert.ok(dashboardFiles.length >= 4);
    for (const file of dashboardFiles) {
      const configMap = standard.manifests.find(
        (m) => m.kind === 'ConfigMap' && m.data?.[file] !== undefined,
      );
      assert.ok(configMap, `no ConfigMap holds dashboard ${file}`);
      assert.equal(configMap.metadata.labels?.grafana_dashboard, '1');
      assert.deepEqual(
        JSON.parse(configMap.data![file]),
        JSON.parse(readFileSync(join(DOCKER_DIR, 'grafana/dashboards', file), 'utf8')),
      );
    }

    const lists = find(standard.manifests, 'ConfigMap', 'dmp-rocketmq-provisioning');
    for (const file of ['topics.txt', 'groups.txt', 'rocketmq-init.sh'])
      assert.equal(
        lists.data?.[file].trimEnd(),
        readFileSync(join(DOCKER_DIR, 'rocketmq', file), 'utf8').trimEnd(),
        file,
      );
    const job = find(standard.manifests, 'Job', 'dmp-rocketmq-provisioning');
    assert.equal(job.metadata.annotations?.['helm.sh/hook'], 'pre-install,pre-upgrade');
    assert.equal(lists.metadata.annotations?.['helm.sh/hook'], 'pre-install,pre-upgrade');
    assert.ok(
      Number(lists.metadata.annotations?.['helm.sh/hook-weight']) <
        Number(job.metadata.annotations?.['helm.sh/hook-weight']),
      'the lists exist before the Job that reads them',
    );
    const init = podSpec(job).containers[0];
    assert.equal(init.image, readCompose().services['rocketmq-init'].image);
  });
});
