/**
 * Secure by default: no usable default secret. Every secret docker/docker-compose.yml gives an app is
 * required by compose itself (`${VAR:?…}`), and the app refuses it empty or as a known placeholder at
 * start-up, with an error naming the variable — checked through each app's config and by starting the
 * built apps.
 */
import { ConfigError, PLACEHOLDER_SECRETS } from '@dmp/config';
import { REPO_ROOT } from '@dmp/testing';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { loadDataConfig } from '../apps/dmp-data/src/config';
import { loadKernelConfig } from '../apps/dmp-kernel/src/config';
import { loadMqttConfig } from '../apps/dmp-mqtt/src/config';
import {
  environmentOf,
  envExample,
  filledEnv,
  interpolate,
  readCompose,
  referencesIn,
} from './support/compose';

const loaders: Record<string, (env: Record<string, string>) => unknown> = {
  'dmp-mqtt': loadMqttConfig,
  'dmp-kernel': loadKernelConfig,
  'dmp-data': loadDataConfig,
};
const compose = readCompose();
const vars = filledEnv();

/** Each app's secrets: the variables of its environment that compose requires (`${NAME:?…}`). */
const secrets = Object.keys(loaders).flatMap((app) =>
  Object.entries(compose.services[app].environment ?? {}).flatMap(([key, value]) =>
    referencesIn(String(value))
      .filter((reference) => reference.operator === ':?')
      .map((reference) => ({ app, key, variable: reference.name, raw: String(value) })),
  ),
);

/** The problems the app's config reports for `env` (none: it starts). */
function problems(app: string, env: Record<string, string>): string[] {
  try {
    loaders[app](env);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
}

const BAD_VALUES = [
  '',
  ...PLACEHOLDER_SECRETS,
  ...PLACEHOLDER_SECRETS.map((p) => p.toUpperCase().replaceAll('-', '_')),
];

describe('secrets: none has a usable default', () => {
  it('finds the secrets of all three apps in the compose file', () => {
    const keys = (app: string) => secrets.filter((s) => s.app === app).map((s) => s.key);
    assert.deepEqual(keys('dmp-mqtt').sort(), [
      'ADMIN_TOKEN',
      'MQTT_AUTH_HTTP_SECRET',
      'MQTT_PASSWORD',
      'REDIS_URL',
    ]);
    assert.deepEqual(keys('dmp-kernel').sort(), ['ADMIN_TOKEN', 'MQTT_PASSWORD', 'REDIS_URL']);
    assert.deepEqual(keys('dmp-data').sort(), ['CLICKHOUSE_PASSWORD', 'REDIS_URL']);
  });

  it("starts each app with compose's environment once every secret is set", () => {
    for (const app of Object.keys(loaders))
      assert.deepEqual(problems(app, environmentOf(compose, app, vars)), [], app);
  });

  it('has compose refuse to start without each secret, unset or empty', () => {
    for (const { app, key, variable, raw } of secrets)
      for (const value of [undefined, ''])
        assert.throws(
          () => interpolate(raw, { ...vars, [variable]: value }),
          new RegExp(`required variable ${variable} is missing a value`),
          `${app} ${key} with ${variable}=${value}`,
        );
  });

  it('has .env.example give no secret a value', () => {
    for (const { variable } of secrets)
      assert.equal(envExample()[variable], '', `${variable} in .env.example`);
  });

  it('has each app refuse every secret empty or as a known placeholder, naming the variable', () => {
    let checked = 0;
    for (const { app, key, variable } of secrets)
      for (const bad of BAD_VALUES) {
        // Empty: the app itself, in case it is started without compose.
        const env =
          bad === ''
            ? { ...environmentOf(compose, app, vars), [key]: '' }
            : environmentOf(compose, app, { ...vars, [variable]: bad });
        const found = problems(app, env);
        assert.ok(
          found.some((p) => p.startsWith(`${key}: `)),
          `${app} accepted ${key} from ${variable}=${JSON.stringify(bad)} (${found.join('; ') || 'no problem'})`,
        );
        checked++;
      }
    assert.equal(checked, secrets.length * BAD_VALUES.length);
  });

  it("has dmp-mqtt require its admin token and EMQX's auth secret when they are not set at all", () => {
    const env = environmentOf(compose, 'dmp-mqtt', vars);
    for (const key of ['ADMIN_TOKEN', 'MQTT_AUTH_HTTP_SECRET']) {
      const rest = Object.fromEntries(Object.entries(env).filter(([name]) => name !== key));
      assert.ok(
        problems('dmp-mqtt', rest).some(
          (p) => p === `${key}: is required: set a secret (there is no default)`,
        ),
        key,
      );
    }
  });

  it('stops each built app at start-up on a placeholder secret, with an error naming it', async () => {
    for (const app of Object.keys(loaders)) {
      const { key, variable } = secrets.find((s) => s.app === app)!;
      const env = environmentOf(compose, app, { ...vars, [variable]: 'change-me' });
      const result = await promisify(execFile)(
        process.execPath,
        [join(REPO_ROOT, 'dist/apps', app, 'src/main.js')],
        { env: { PATH: process.env.PATH, ...env, OTEL_ENABLED: 'false' }, timeout: 30_000 },
      ).then(
        () => ({ code: 0, stderr: '' }),
        (error: { code: number; stderr: string }) => error,
      );
      assert.equal(result.code, 1, `${app} exit code`);
      assert.match(result.stderr, new RegExp(`Invalid configuration:[\\s\\S]*${key}: is a placeholder`), app);
    }
  });
});
