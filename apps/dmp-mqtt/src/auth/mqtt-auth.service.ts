import { DeviceErrorCode, DmpError } from '@dmp/contracts';
import { MetricsRegistry } from '@dmp/observability';
import { Inject, Injectable } from '@nestjs/common';
import { InjectPinoLogger, PinoLogger } from 'nestjs-pino';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Counter, Histogram } from 'prom-client';
import { z } from 'zod';
import { MQTT_APP_CONFIG, type MqttAppConfig } from '../config';
import {
  clientIdAllowed,
  deviceMayAccess,
  isDeviceUsername,
  isReservedDeviceId,
  isServiceClientId,
  type ServiceIdentity,
} from '../devices/acl';
import { DeviceRegistry } from '../devices/device-registry.service';
import { burnSecretCheck, limitSecretChecks } from '../devices/device-secret';
import { LoginThrottle } from './login-throttle';

/** EMQX 5 HTTP authenticator answer. `is_superuser` skips authorization for the connection. */
export interface AuthnAnswer {
  result: 'allow' | 'deny';
  is_superuser: boolean;
}

/** EMQX 5 HTTP authorizer answer. */
export interface AuthzAnswer {
  result: 'allow' | 'deny';
}

/**
 * What EMQX sends, as configured in docker/emqx/emqx.conf (`${clientid}` … placeholders, always JSON
 * strings; an absent value arrives as "", an empty client id as the random one EMQX assigned, `peerhost`
 * as inet:ntoa prints it). Unknown extra fields are ignored: adding a placeholder to the EMQX template
 * must not turn every answer into "deny". test/emqx-contract.e2e-spec.ts renders them from emqx.conf.
 */
const authnRequestSchema = z.object({
  clientid: z.string().max(65_535),
  username: z.string().max(65_535),
  password: z.string().max(65_535),
  peerhost: z.string().max(256).optional(),
});
const authzRequestSchema = z.object({
  clientid: z.string().max(65_535),
  username: z.string().max(65_535),
  topic: z.string().max(65_535),
  action: z.enum(['publish', 'subscribe']),
});

/** Why a request was denied: the `reason` label of `dmp_mqtt_auth_denied_total`. */
type DenyReason =
  | 'bad_request'
  | 'bad_shared_secret'
  | 'not_a_device'
  | 'reserved_id'
  | 'not_service_client'
  | 'client_id_mismatch'
  | 'throttled_id'
  | 'throttled_peer'
  | 'overloaded'
  | 'unknown_device'
  | 'disabled'
  | 'wrong_secret'
  | 'topic_not_allowed'
  | 'error';

export type Endpoint = 'authn' | 'authz';

/**
 * The decisions behind `POST /auth/mqtt/authn` and `/authz` (EMQX's HTTP authenticator and authorizer).
 * Every failure — malformed request, registry unreachable, anything thrown — is a "deny", never an error
 * status: EMQX 5.8 reads any status other than 200/204 as "ignore" (authn) or no match (authz), and a
 * 204 from either as "allow" (emqx_authn_http:authenticate/2, emqx_authz_http:authorize/4).
 */
@Injectable()
export class MqttAuthService {
  private readonly decisions: Counter<'endpoint' | 'result'>;
  private readonly denials: Counter<'endpoint' | 'reason'>;
  private readonly seconds: Histogram<'endpoint'>;
  private readonly service?: { username: string; password: Buffer };
  private readonly identity: ServiceIdentity;
  private readonly sharedSecret?: Buffer;
  private readonly throttle: LoginThrottle;

  constructor(
    private readonly registry: DeviceRegistry,
    @Inject(MQTT_APP_CONFIG) config: MqttAppConfig,
    metrics: MetricsRegistry,
    @InjectPinoLogger(MqttAuthService.name) private readonly logger: PinoLogger,
  ) {
    const { username, password } = config.edge.service;
    if (username && password) this.service = { username, password: digest(password) };
    this.identity = config.edge.service;
    const { login } = config.edge;
    this.throttle = new LoginThrottle({
      perId: login.perId,
      perPeer: login.perPeer,
      maxEntries: config.edge.registry.cacheMaxEntries,
      trustTtlMs: TRUSTED_PEER_TTL_MS,
    });
    const checks = limitSecretChecks(login.maxConcurrentHashes, login.maxQueuedHashes);
    metrics.gauge(
      'dmp_mqtt_auth_hash_checks',
      'Password (scrypt) checks of logins running and waiting for a slot',
      ['state'],
      function () {
        this.set({ state: 'running' }, checks.active);
        this.set({ state: 'waiting' }, checks.waiting);
      },
    );
    if (config.edge.authHttpSecret) this.sharedSecret = digest(config.edge.authHttpSecret);
    this.decisions = metrics.counter(
      'dmp_mqtt_auth_total',
      'EMQX authentication (authn) and authorization (authz) decisions, by result',
      ['endpoint', 'result'],
    );
    this.denials = metrics.counter('dmp_mqtt_auth_denied_total', 'Denied authn/authz requests, by reason', [
      'endpoint',
      'reason',
    ]);
    this.seconds = metrics.histogram('dmp_mqtt_auth_seconds', 'Time to answer an authn/authz request', [
      'endpoint',
    ]);
  }

  async authenticate(body: unknown, sharedSecret: string | undefined): Promise<AuthnAnswer> {
    const verdict = await this.decide(
      'authn',
      async () => {
        if (!this.sharedSecretOk(sharedSecret)) return 'bad_shared_secret';
        const request = authnRequestSchema.safeParse(body);
        if (!request.success) return 'bad_request';
        const { clientid, username, password, peerhost } = request.data;
        if (this.service && username === this.service.username) {
          // Not throttled: a cheap comparison (no scrypt), and throttling would let anyone lock
          // dmp-mqtt itself out. Its password is a checked secret, not guessable at any rate.
          if (!isServiceClientId(this.identity, clientid)) return 'not_service_client';
          return this.isService(username, password) ? 'superuser' : 'wrong_secret';
        }
        if (!isDeviceUsername(username)) return 'not_a_device';
        if (!clientIdAllowed(username, clientid)) return 'client_id_mismatch';
        if (isReservedDeviceId(this.identity, username)) return 'reserved_id';
        const throttled = this.throttle.admit(username, peerhost);
        if (throttled !== 'ok') return throttled;
        let ok: boolean;
        let failure: DenyReason | undefined;
        try {
          // Unknown, disabled and wrong secret cost the same scrypt: timing tells no id apart.
          const device = await this.registry.lookup(username);
          failure = !device ? 'unknown_device' : device.status !== 'enabled' ? 'disabled' : undefined;
          ok = failure
            ? await burnSecretCheck(password)
            : await this.registry.verifyCredentials(username, password);
        } catch (error) {
          this.throttle.release(username, peerhost); // never checked: not a failure
          throw error;
        }
        if (!ok) {
          this.throttle.failed(peerhost);
          return failure ?? 'wrong_secret';
        }
        this.throttle.succeeded(username, peerhost);
        return 'allow';
      },
      body,
    );
    return { result: verdict === 'deny' ? 'deny' : 'allow', is_superuser: verdict === 'superuser' };
  }

  async authorize(body: unknown, sharedSecret: string | undefined): Promise<AuthzAnswer> {
    const verdict = await this.decide(
      'authz',
      async () => {
        if (!this.sharedSecretOk(sharedSecret)) return 'bad_shared_secret';
        const request = authzRequestSchema.safeParse(body);
        if (!request.success) return 'bad_request';
        const { clientid, username, topic, action } = request.data;
        // Superusers skip EMQX's authorization; if asked anyway, the service account may do anything —
        // under a service client id only.
        if (this.service && username === this.service.username)
          return isServiceClientId(this.identity, clientid) ? 'allow' : 'not_service_client';
        if (!isDeviceUsername(username)) return 'not_a_device';
        if (!clientIdAllowed(username, clientid)) return 'client_id_mismatch';
        if (isReservedDeviceId(this.identity, username)) return 'reserved_id';
        if (!deviceMayAccess(username, action, topic)) return 'topic_not_allowed';
        const device = await this.registry.lookup(username);
        if (!device) return 'unknown_device';
        if (device.status !== 'enabled') return 'disabled';
        return 'allow';
      },
      body,
    );
    return { result: verdict === 'deny' ? 'deny' : 'allow' };
  }

  /** A request the HTTP layer could not even parse (answered "deny" by AuthRequestErrorFilter). */
  countUnreadable(endpoint: Endpoint): void {
    this.decisions.inc({ endpoint, result: 'deny' });
    this.denials.inc({ endpoint, reason: 'bad_request' });
  }

  private async decide(
    endpoint: Endpoint,
    check: () => Promise<DenyReason | 'allow' | 'superuser'>,
    body: unknown,
  ): Promise<'allow' | 'superuser' | 'deny'> {
    const stopTimer = this.seconds.startTimer({ endpoint });
    let outcome: DenyReason | 'allow' | 'superuser';
    try {
      outcome = await check();
    } catch (error) {
      if (error instanceof DmpError && error.code === DeviceErrorCode.AuthOverloaded) {
        outcome = 'overloaded';
      } else {
        outcome = 'error';
        this.logger.warn({ endpoint, err: error }, `${endpoint} failed, denying`);
      }
    } finally {
      stopTimer();
    }
    const allowed = outcome === 'allow' || outcome === 'superuser';
    this.decisions.inc({ endpoint, result: allowed ? 'allow' : 'deny' });
    if (!allowed) {
      this.denials.inc({ endpoint, reason: outcome });
      this.logger.debug({ endpoint, reason: outcome, ...identify(body) }, `${endpoint} denied`);
      return 'deny';
    }
    return outcome === 'superuser' ? 'superuser' : 'allow';
  }

  private isService(username: string, password: string): boolean {
    if (!this.service || username !== this.service.username) return false;
    return timingSafeEqual(digest(password), this.service.password);
  }

  private sharedSecretOk(header: string | undefined): boolean {
    if (!this.sharedSecret) return true;
    return header !== undefined && timingSafeEqual(digest(header), this.sharedSecret);
  }
}

/** How long a device–address pair that logged in is exempt from the per-id throttle. */
const TRUSTED_PEER_TTL_MS = 24 * 3_600_000;

const digest = (value: string) => createHash('sha256').update(value).digest();

/** Who asked, for the log — never the password. */
function identify(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null) return {};
  const { clientid, username, topic, action, peerhost } = body as Record<string, unknown>;
  const short = (v: unknown) => (typeof v === 'string' ? v.slice(0, 200) : undefined);
  return {
    clientId: short(clientid),
    username: short(username),
    topic: short(topic),
    action: short(action),
    peerhost: short(peerhost),
  };
}
