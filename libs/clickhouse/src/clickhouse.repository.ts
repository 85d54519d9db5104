import {
  ClickHouseLogLevel,
  createClient,
  type ClickHouseClient,
  type ClickHouseSettings,
} from '@clickhouse/client';
import { errorMessage } from '@dmp/contracts';
import {
  context,
  ROOT_CONTEXT,
  SpanKind,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
} from '@opentelemetry/api';
import type { MetricsRegistry } from '@dmp/observability';
import type { Counter, Histogram } from 'prom-client';
import { clickhouseErrorCode } from './errors';
import { identifier, stringLiteral } from './sql';
import { atLeast, parseServerVersion, type ServerVersion } from './server-version';

export interface ClickHouseConnectionOptions {
  url: string;
  username: string;
  password: string;
  database: string;
  /** Per request (default 30 s); inserts of a full batch stay far below it. */
  requestTimeoutMs?: number;
  maxOpenConnections?: number;
  /**
   * A cluster in the servers' `remote_servers` (CLICKHOUSE_CLUSTER): the schema is sharded and
   * replicated across it (cluster.ts), and every insert waits until the shards stored their rows.
   */
  cluster?: string;
}

export interface InsertOptions {
  /** Links of the batch span: the producers' contexts of the messages in the batch (cap them, ~128). */
  links?: Link[];
  /**
   * Contexts of callers (e.g. one message's `process` span) whose traces should show this insert:
   * for each one that is recording, a child span with the same name and attributes is made under
   * it, lasting the insert and linked to the batch span.
   */
  parents?: readonly Context[];
  /**
   * Insert only these columns (`INSERT INTO t (…)`): the others get their DEFAULT expressions,
   * which 18.16 does not apply to fields merely missing from a JSONEachRow row.
   */
  columns?: readonly [string, ...string[]];
  /**
   * On a cluster: acknowledged only once every replica of the rows' shards has them (`insert_quorum`),
   * so a reader on any replica sees them. While a replica is down the quorum cannot be met: the rows
   * are then inserted without it (the same block, so what a shard already took is deduplicated).
   */
  quorum?: boolean;
}

/** How a read picks the replicas of a cluster. */
export interface ReadOptions {
  /**
   * Read only replicas whose replication queue is at most this many seconds behind, and fail when a
   * shard has none: a replica catching up after an outage lacks rows the others have.
   */
  maxReplicaDelaySeconds?: number;
}

/** Quorum failures an insert without quorum gets past: too few live replicas, an earlier quorum unmet, its timeout. */
const QUORUM_UNREACHABLE = new Set([285, 286, 319]);

interface ClickHouseMetrics {
  insertSeconds: Histogram<'table'>;
  insertRows: Counter<'table'>;
  batchSize: Histogram<'table'>;
  insertErrors: Counter<'table'>;
}

const BATCH_SIZE_BUCKETS = [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000];
const tracer = trace.getTracer('@dmp/clickhouse');

/** ClickHouse's default `max_query_size`, in bytes. */
const MAX_QUERY_SIZE_DEFAULT = 262_144;

/**
 * DMP's access to ClickHouse: ping, a few SQL helpers for migrations and tests, and traced,
 * measured JSONEachRow inserts. Works against 18.16 (no query parameters, no unknown settings are
 * ever sent) and current releases alike.
 */
export class ClickHouseRepository {
  readonly database: string;
  private readonly client: ClickHouseClient;
  private readonly serverAttributes: Attributes;
  private readonly metrics?: ClickHouseMetrics;
  private version?: Promise<ServerVersion>;
  private clusterSettings?: Promise<{ insert: ClickHouseSettings; quorum: ClickHouseSettings }>;

  constructor(
    private readonly options: ClickHouseConnectionOptions,
    deps: { metrics?: MetricsRegistry } = {},
  ) {
    this.database = identifier(options.database);
    if (options.cluster !== undefined) identifier(options.cluster);
    this.client = createClient({
      url: options.url,
      username: options.username,
      password: options.password,
      database: options.database,
      request_timeout: this.requestTimeoutMs,
      max_open_connections: options.maxOpenConnections ?? 10,
      // The client would print its own errors to the console; DMP logs and measures them itself.
      log: { level: ClickHouseLogLevel.OFF },
    });
    const url = new URL(options.url);
    this.serverAttributes = {
      'db.system.name': 'clickhouse',
      'db.namespace': this.database,
      'server.address': url.hostname,
      'server.port': Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
    };
    if (deps.metrics) this.metrics = clickhouseMetrics(deps.metrics);
  }

  /** The cluster DMP's schema is spread over, or undefined on a single server. */
  get cluster(): string | undefined {
    return this.options.cluster;
  }

  /** A request not answered within this long fails: an insert acknowledged was committed within it. */
  get requestTimeoutMs(): number {
    return this.options.requestTimeoutMs ?? 30_000;
  }

  /** True when the server answers `/ping`. */
  async ping(): Promise<boolean> {
    const result = await this.client.ping();
    return result.success;
  }

  /** Health detail: up, and the server release. */
  async health(): Promise<{ up: boolean; detail: Record<string, unknown> }> {
    const result = await this.client.ping();
    if (!result.success) return { up: false, detail: { message: result.error.message } };
    return { up: true, detail: { database: this.database } };
  }

  /** `SELECT version()`, asked once per repository. */
  serverVersion(): Promise<ServerVersion> {
    this.version ??= this.query<{ v: string }>('SELECT version() AS v')
      .then((rows) => parseServerVersion(rows[0]?.v ?? '0.0'))
      .catch((error: unknown) => {
        this.version = undefined;
        throw error;
      });
    return this.version;
  }

  /**
   * A statement without result (DDL, ALTER, INSERT … SELECT). Its size is not capped by the server's
   * `max_query_size` (256 KiB by default), which would refuse a generated one (a long IN list) forever.
   */
  async command(sql: string, options: ReadOptions = {}): Promise<void> {
    const bytes = Buffer.byteLength(sql);
    const settings: ClickHouseSettings = {
      ...(await this.insertSettings()),
      ...this.readSettings(options),
      ...(bytes > MAX_QUERY_SIZE_DEFAULT ? { max_query_size: String(bytes + 1) } : {}),
    };
    await this.client.command({
      query: sql,
      ...(Object.keys(settings).length > 0 ? { clickhouse_settings: settings } : {}),
    });
  }

  /**
   * On a cluster, inserts through a Distributed table return once every shard stored its rows, not
   * when they are queued for sending: `insert_distributed_sync` (18.16 and later), renamed
   * `distributed_foreground_insert` in 24.1. Nothing on a single server.
   */
  private async insertSettings(quorum = false): Promise<ClickHouseSettings> {
    const cluster = this.options.cluster;
    if (cluster === undefined) return {};
    this.clusterSettings ??= (async () => {
      const version = await this.serverVersion();
      const [shape] = await this.query<{ replicas: number }>(
        `SELECT max(replica_num) AS replicas FROM system.clusters WHERE cluster = ${stringLiteral(cluster)}`,
      );
      const replicas = Number(shape?.replicas ?? 0);
      if (replicas < 1) throw new Error(`ClickHouse has no cluster ${cluster} (CLICKHOUSE_CLUSTER)`);
      // (the client's settings type lists the old name only)
      const insert = (
        atLeast(version, 24, 1) ? { distributed_foreground_insert: 1 } : { insert_distributed_sync: 1 }
      ) as ClickHouseSettings;
      return {
        insert,
        quorum: {
          ...insert,
          insert_quorum: String(replicas),
          // Well within the request timeout: a replica that cannot confirm is treated as down.
          insert_quorum_timeout: Math.min(10_000, Math.floor(this.requestTimeoutMs / 2)),
        },
      };
    })().catch((error: unknown) => {
      this.clusterSettings = undefined;
      throw error;
    });
    const settings = await this.clusterSettings;
    return quorum && settings.quorum.insert_quorum !== '1' ? settings.quorum : settings.insert;
  }

  /** A SELECT, rows as objects (64-bit integers arrive as strings, as ClickHouse quotes them in JSON). */
  async query<T>(sql: string, options: ReadOptions = {}): Promise<T[]> {
    const settings = this.readSettings(options);
    const result = await this.client.query({
      query: sql,
      format: 'JSONEachRow',
      ...(Object.keys(settings).length > 0 ? { clickhouse_settings: settings } : {}),
    });
    return result.json<T>();
  }

  /**
   * On a cluster, a Distributed read from replicas at most `maxReplicaDelaySeconds` behind the others
   * (`max_replica_delay_for_distributed_queries`), failing rather than reading a stale one
   * (`fallback_to_stale_replicas_for_distributed_queries` off). Nothing on a single server.
   */
  private readSettings({ maxReplicaDelaySeconds }: ReadOptions): ClickHouseSettings {
    if (this.options.cluster === undefined || maxReplicaDelaySeconds === undefined) return {};
    return {
      max_replica_delay_for_distributed_queries: String(Math.max(1, Math.floor(maxReplicaDelaySeconds))),
      fallback_to_stale_replicas_for_distributed_queries: 0,
    };
  }

  /**
   * Inserts rows (JSONEachRow) into a table of this database in one request, inside a CLIENT span
   * `INSERT {table}`. The batch span is a root span (a batch belongs to no single message's
   * trace) linked to the messages' producers; `parents` get their own child spans (see
   * {@link InsertOptions}). Throws what the server or the network threw.
   */
  async insertRows<T extends object>(
    table: string,
    rows: readonly T[],
    options: InsertOptions = {},
  ): Promise<void> {
    if (rows.length === 0) return;
    identifier(table);
    const attributes: Attributes = {
      ...this.serverAttributes,
      'db.collection.name': table,
      'db.operation.name': 'INSERT',
      'db.operation.batch.size': rows.length,
      'db.query.summary': `INSERT ${table}`,
    };
    const name = `INSERT ${table}`;
    const batchSpan = tracer.startSpan(
      name,
      { kind: SpanKind.CLIENT, attributes, links: options.links ?? [] },
      ROOT_CONTEXT,
    );
    const batchLink: Link = { context: batchSpan.spanContext() };
    const children: Span[] = [];
    for (const parent of options.parents ?? []) {
      if (!trace.getSpan(parent)?.isRecording()) continue;
      children.push(
        tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes, links: [batchLink] }, parent),
      );
    }
    const spans = [batchSpan, ...children];
    const labels = { table };
    const stopTimer = this.metrics?.insertSeconds.startTimer(labels);
    this.metrics?.batchSize.observe(labels, rows.length);
    try {
      // The HTTP client span (if instrumented) belongs under the batch span, not under whichever
      // message's context happened to trigger the flush.
      const insert = (settings: ClickHouseSettings) =>
        context.with(trace.setSpan(ROOT_CONTEXT, batchSpan), () =>
          this.client.insert({
            table,
            values: rows,
            format: 'JSONEachRow',
            ...(options.columns ? { columns: [...options.columns] as [string, ...string[]] } : {}),
            ...(Object.keys(settings).length > 0 ? { clickhouse_settings: settings } : {}),
          }),
        );
      const settings = await this.insertSettings(options.quorum);
      try {
        await insert(settings);
      } catch (error) {
        const code = clickhouseErrorCode(error);
        if (settings.insert_quorum === undefined || code === undefined || !QUORUM_UNREACHABLE.has(code))
          throw error;
        for (const span of spans) span.addEvent('insert_quorum unreachable, inserted without', { code });
        await insert(await this.insertSettings(false));
      }
      this.metrics?.insertRows.inc(labels, rows.length);
    } catch (error) {
      this.metrics?.insertErrors.inc(labels);
      const message = errorMessage(error);
      for (const span of spans) {
        span.recordException(error instanceof Error ? error : new Error(message));
        span.setStatus({ code: 2, message });
        span.setAttribute('error.type', errorType(error));
      }
      throw error;
    } finally {
      stopTimer?.();
      for (const span of spans) span.end();
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /** A repository on the same server for another database (e.g. `default`, to create DMP's own). */
  forDatabase(database: string): ClickHouseRepository {
    return new ClickHouseRepository({ ...this.options, database });
  }
}

function errorType(error: unknown): string {
  const serverCode = clickhouseErrorCode(error);
  if (serverCode !== undefined) return `clickhouse_${serverCode}`;
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && code) return code;
  return error instanceof Error ? error.name : 'unknown';
}

/** The ClickHouse metrics, created once per registry (several repositories may share one). */
function clickhouseMetrics(registry: MetricsRegistry): ClickHouseMetrics {
  const existing = <M>(name: string) => registry.registry.getSingleMetric(name) as M | undefined;
  return {
    insertSeconds:
      existing<Histogram<'table'>>('dmp_clickhouse_insert_seconds') ??
      registry.histogram('dmp_clickhouse_insert_seconds', 'Duration of ClickHouse inserts (one request)', [
        'table',
      ]),
    insertRows:
      existing<Counter<'table'>>('dmp_clickhouse_insert_rows_total') ??
      registry.counter('dmp_clickhouse_insert_rows_total', 'Rows inserted into ClickHouse', ['table']),
    batchSize:
      existing<Histogram<'table'>>('dmp_clickhouse_batch_size') ??
      registry.histogram(
        'dmp_clickhouse_batch_size',
        'Rows per ClickHouse insert',
        ['table'],
        BATCH_SIZE_BUCKETS,
      ),
    insertErrors:
      existing<Counter<'table'>>('dmp_clickhouse_insert_errors_total') ??
      registry.counter('dmp_clickhouse_insert_errors_total', 'Failed ClickHouse inserts', ['table']),
  };
}
