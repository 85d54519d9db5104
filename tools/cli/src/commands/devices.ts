import { loadConfig } from '@dmp/config';
import { Command, InvalidArgumentError } from 'commander';
import { z } from 'zod';

/**
 * `dmp devices register|show|enable|disable|remove` — the device registry, through dmp-mqtt's admin API
 * (`/admin/devices`, Bearer ADMIN_TOKEN), not Redis directly: the API is the registry's one writer (it
 * validates, hashes secrets with the same code the authentication uses, and announces every change to
 * all replicas), and an operator needs the admin token and dmp-mqtt's address — not network access to
 * Redis, which stays private in a deployment.
 *
 * Configuration: DMP_ADMIN_URL (default http://127.0.0.1:3001) and ADMIN_TOKEN, or --url / --token.
 */
const cliSection = z
  .object({
    DMP_ADMIN_URL: z.url().default('http://127.0.0.1:3001'),
    ADMIN_TOKEN: z.string().optional(),
  })
  .transform((e) => ({ url: e.DMP_ADMIN_URL, token: e.ADMIN_TOKEN }));

interface ApiOptions {
  url?: string;
  token?: string;
}

interface DeviceView {
  deviceId: string;
  status: string;
  tenantId: string;
  productId: string;
  siteId: string;
  tags: Record<string, string>;
  createdAt: string;
  updatedAt: string;
}

class AdminApi {
  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
  ) {}

  static from(options: ApiOptions): AdminApi {
    const env = loadConfig({ cli: cliSection }).cli;
    const token = options.token ?? env.token;
    if (!token) throw new Error('the admin token is needed: set ADMIN_TOKEN or pass --token');
    return new AdminApi((options.url ?? env.url).replace(/\/+$/, ''), token);
  }

  /** Status and parsed body; throws on network errors and on statuses not in `accept`. */
  async call<T>(
    method: string,
    path: string,
    body: unknown,
    accept: number[],
  ): Promise<{ status: number; body: T }> {
    const response = await fetch(`${this.baseUrl}/admin/devices${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    const parsed = (text ? JSON.parse(text) : undefined) as T;
    if (!accept.includes(response.status))
      throw new Error(`${method} ${path || '/'}: ${response.status} ${describeError(parsed)}`);
    return { status: response.status, body: parsed };
  }
}

function describeError(body: unknown): string {
  if (typeof body !== 'object' || body === null)
    return typeof body === 'string' ? body : JSON.stringify(body ?? '');
  const { message, issues, errorId } = body as {
    message?: unknown;
    issues?: { path: string; message: string }[];
    errorId?: string;
  };
  const details = issues?.map((i) => `${i.path || '(body)'}: ${i.message}`).join('; ');
  return [message, details, errorId ? `error id ${errorId}` : undefined].filter(Boolean).join(' — ');
}

const tagOption = (value: string, previous: Record<string, string> = {}) => {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError('tags are name=value');
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
};

const positiveInt = (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
};

/** Device ids of a simulated fleet: `{prefix}-{index}`, zero-padded like the simulator pads them. */
export function fleetDeviceIds(prefix: string, count: number): string[] {
  const width = String(Math.max(0, count - 1)).length;
  return Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(width, '0')}`);
}

interface RegisterOptions extends ApiOptions {
  secret?: string;
  tenant?: string;
  product?: string;
  site?: string;
  tag?: Record<string, string>;
  disabled?: boolean;
  prefix?: string;
  count?: number;
  concurrency: number;
}

async function register(deviceId: string | undefined, options: RegisterOptions): Promise<void> {
  const api = AdminApi.from(options);
  const fields = {
    ...(options.secret ? { secret: options.secret } : {}),
    ...(options.tenant !== undefined ? { tenantId: options.tenant } : {}),
    ...(options.product !== undefined ? { productId: options.product } : {}),
    ...(options.site !== undefined ? { siteId: options.site } : {}),
    ...(options.tag ? { tags: options.tag } : {}),
    ...(options.disabled ? { status: 'disabled' } : {}),
  };
  if (deviceId !== undefined) {
    if (options.prefix !== undefined || options.count !== undefined)
      throw new InvalidArgumentError('give a device id, or --prefix with --count, not both');
    const { body } = await api.call<{ device: DeviceView; secret?: string }>(
      'POST',
      '',
      { deviceId, ...fields },
      [201],
    );
    console.log(JSON.stringify(body, null, 2));
    if (body.secret)
      console.error('The secret is shown this once: the registry keeps only a salted hash of it.');
    return;
  }
  if (options.prefix === undefined || options.count === undefined)
    throw new InvalidArgumentError('give a device id, or --prefix and --count for a fleet');

  // A fleet: `deviceId,secret` lines (CSV) for the devices registered now; existing ones are skipped.
  const ids = fleetDeviceIds(options.prefix, options.count);
  let next = 0;
  let created = 0;
  let existing = 0;
  console.log('deviceId,secret');
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++];
      const { status, body } = await api.call<{ secret?: string }>(
        'POST',
        '',
        { deviceId: id, ...fields },
        [201, 409],
      );
      if (status === 409) {
        existing++;
        continue;
      }
      created++;
      console.log(`${id},${options.secret ?? body.secret ?? ''}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency, ids.length) }, worker));
  console.error(`${created} device(s) registered, ${existing} already registered (unchanged)`);
}

async function show(deviceId: string, options: ApiOptions): Promise<void> {
  const { body } = await AdminApi.from(options).call<DeviceView>(
    'GET',
    `/${encodeURIComponent(deviceId)}`,
    undefined,
    [200],
  );
  console.log(JSON.stringify(body, null, 2));
}

async function setStatus(
  deviceId: string,
  status: 'enabled' | 'disabled',
  options: ApiOptions,
): Promise<void> {
  const { body } = await AdminApi.from(options).call<DeviceView>(
    'PATCH',
    `/${encodeURIComponent(deviceId)}`,
    { status },
    [200],
  );
  console.log(`${body.deviceId} is ${body.status}`);
}

async function remove(deviceId: string, options: ApiOptions): Promise<void> {
  await AdminApi.from(options).call('DELETE', `/${encodeURIComponent(deviceId)}`, undefined, [204]);
  console.log(`${deviceId} removed`);
}

export function registerDevicesCommand(program: Command): void {
  const devices = program
    .command('devices')
    .description("the device registry (through dmp-mqtt's admin API: DMP_ADMIN_URL, ADMIN_TOKEN)");
  const withApi = (command: Command) =>
    command
      .option('--url <url>', "dmp-mqtt's base URL (default DMP_ADMIN_URL or http://127.0.0.1:3001)")
      .option('--token <token>', 'admin token (default ADMIN_TOKEN)');

  withApi(
    devices
      .command('register [deviceId]')
      .description(
        'register a device (prints its generated secret once), or a fleet with --prefix and --count',
      )
      .option('--secret <secret>', 'use this secret (at least 16 characters) instead of a generated one')
      .option('--tenant <id>', 'tenant id')
      .option('--product <id>', 'product id')
      .option('--site <id>', 'site id')
      .option('--tag <name=value>', 'a tag (repeatable)', tagOption)
      .option('--disabled', 'register it disabled')
      .option('--prefix <prefix>', 'fleet: device ids {prefix}-{index}, as the simulator names them')
      .option('--count <n>', 'fleet: how many devices', positiveInt)
      .option('--concurrency <n>', 'fleet: requests in parallel', positiveInt, 16),
  ).action((deviceId: string | undefined, options: RegisterOptions) => register(deviceId, options));
  withApi(devices.command('show <deviceId>').description('show a registered device')).action(
    (deviceId: string, options: ApiOptions) => show(deviceId, options),
  );
  withApi(
    devices
      .command('disable <deviceId>')
      .description('disable a device: its messages are refused within a second, its logins denied'),
  ).action((deviceId: string, options: ApiOptions) => setStatus(deviceId, 'disabled', options));
  withApi(devices.command('enable <deviceId>').description('enable a disabled device')).action(
    (deviceId: string, options: ApiOptions) => setStatus(deviceId, 'enabled', options),
  );
  withApi(devices.command('remove <deviceId>').description('remove a device from the registry')).action(
    (deviceId: string, options: ApiOptions) => remove(deviceId, options),
  );
}
