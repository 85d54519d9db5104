/**
 * docker/docker-compose.yml read the way Docker Compose reads it, for the tests that check or run the
 * deployment without a Docker engine: YAML with merge keys, `.env` files, and `${VAR}` interpolation.
 */
import { REPO_ROOT } from '@dmp/testing';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

export const DOCKER_DIR = join(REPO_ROOT, 'docker');

export interface ComposeHealthcheck {
  test?: string[] | string;
  disable?: boolean;
}
export interface ComposeService {
  image?: string;
  build?: { context?: string; dockerfile?: string; args?: Record<string, string> };
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string | number | boolean>;
  healthcheck?: ComposeHealthcheck;
  depends_on?: Record<string, { condition: string }>;
  volumes?: (string | { source?: string })[];
  configs?: { source: string; target: string }[];
  ports?: string[];
  restart?: string;
  profiles?: string[];
}
export interface Compose {
  services: Record<string, ComposeService>;
  configs?: Record<string, { content?: string; file?: string }>;
  volumes?: Record<string, unknown>;
}

export const composeText = () => readFileSync(join(DOCKER_DIR, 'docker-compose.yml'), 'utf8');
export const readCompose = (): Compose => parse(composeText(), { merge: true }) as Compose;

/** A `.env` file as Compose reads it: `NAME=value` lines; comments and blank lines ignored. */
export function parseDotenv(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split('\n')
      .filter((line) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(line))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1).trim()]),
  );
}

/** docker/.env.example, as a user copies it to docker/.env. */
export const envExample = () => parseDotenv(readFileSync(join(DOCKER_DIR, '.env.example'), 'utf8'));

/**
 * A `.env` a user would write from `.env.example`: every value it leaves empty (the secrets) filled in
 * with a random one, as its comments ask.
 */
export function filledEnv(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(envExample()).map(([name, value]) => [
      name,
      value === '' ? `t${randomBytes(12).toString('hex')}` : value,
    ]),
  );
}

/** One `${…}` reference: `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}`, `${NAME?error}`. */
export interface VariableReference {
  name: string;
  operator: '' | ':-' | '-' | ':?' | '?';
  argument: string;
}
const REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-|:\?|\?)([^}]*))?\}/g;

export function referencesIn(text: string): VariableReference[] {
  return [...text.replaceAll('$$', '').matchAll(REFERENCE)].map((m) => ({
    name: m[1],
    operator: (m[2] ?? '') as VariableReference['operator'],
    argument: m[3] ?? '',
  }));
}

/** Compose's interpolation of one value; a `:?`/`?` reference that is not satisfied throws its message. */
export function interpolate(text: string, vars: Record<string, string | undefined>): string {
  return text
    .split('$$')
    .map((part) =>
      part.replace(
        REFERENCE,
        (_, name: string, operator: string | undefined, argument: string | undefined) => {
          const value = vars[name];
          switch (operator) {
            case ':-':
              return value ? value : (argument ?? '');
            case '-':
              return value ?? argument ?? '';
            case ':?':
            case '?':
              if (value === undefined || (operator === ':?' && value === ''))
                throw new Error(`required variable ${name} is missing a value: ${argument}`);
              return value;
            default:
              return value ?? '';
          }
        },
      ),
    )
    .join('$');
}

/** A service's `environment:` as its container sees it. */
export function environmentOf(
  compose: Compose,
  service: string,
  vars: Record<string, string | undefined>,
): Record<string, string> {
  return Object.fromEntries(
    Object.entries(compose.services[service]?.environment ?? {}).map(([key, value]) => [
      key,
      interpolate(String(value), vars),
    ]),
  );
}

/** The MQTT broker's service accounts (`configs: emqx-service-users`, EMQX's bootstrap CSV). */
export function serviceAccounts(
  compose: Compose,
  vars?: Record<string, string | undefined>,
): { username: string; password: string; superuser: boolean }[] {
  const content = compose.configs?.['emqx-service-users']?.content ?? '';
  const rows = content
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  if (rows[0] !== 'user_id,password,is_superuser') throw new Error('emqx-service-users: unexpected header');
  return rows.slice(1).map((row) => {
    const [username, password, superuser] = (vars ? interpolate(row, vars) : row).split(',');
    return { username, password, superuser: superuser === 'true' };
  });
}
