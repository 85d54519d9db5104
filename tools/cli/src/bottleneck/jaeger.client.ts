/** Jaeger query API (`/api/services/{s}/operations`, `/api/traces`): traces reduced to what the analysis reads. */

/** One span, with its service resolved (Jaeger's own format keeps it in `processes`). */
export interface SlimSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  service: string;
  /** Unix microseconds. */
  startTime: number;
  /** Microseconds. */
  duration: number;
  kind?: string;
}

export interface SlimTrace {
  traceID: string;
  spans: SlimSpan[];
}

interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  processID: string;
  startTime: number;
  duration: number;
  tags?: { key: string; value: unknown }[];
}

interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string }>;
}

export interface TraceSearch {
  service: string;
  operation?: string;
  start: Date;
  end: Date;
  limit: number;
}

export class JaegerClient {
  constructor(
    readonly baseUrl: string,
    private readonly timeoutMs = 20_000,
  ) {}

  async operations(service: string): Promise<string[]> {
    const body = await this.get<{ data: string[] | null }>(
      `/api/services/${encodeURIComponent(service)}/operations`,
    );
    return body.data ?? [];
  }

  /** Traces with a span of `service` (and `operation`) starting in [start, end], whole (every service's spans). */
  async traces(search: TraceSearch): Promise<SlimTrace[]> {
    const params = new URLSearchParams({
      service: search.service,
      start: String(search.start.getTime() * 1000),
      end: String(search.end.getTime() * 1000),
      limit: String(search.limit),
    });
    if (search.operation) params.set('operation', search.operation);
    const body = await this.get<{ data: JaegerTrace[] | null }>(`/api/traces?${params.toString()}`);
    return (body.data ?? []).map(slimTrace);
  }

  private async get<T>(path: string): Promise<T> {
    let response: Response;
    try {
      response = await fetch(new URL(path, this.baseUrl), { signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (error) {
      throw new Error(`Jaeger at ${this.baseUrl} is unreachable: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (!response.ok) throw new Error(`Jaeger ${path.split('?')[0]}: HTTP ${response.status}`);
    return (await response.json()) as T;
  }
}

export function slimTrace(trace: JaegerTrace): SlimTrace {
  return {
    traceID: trace.traceID,
    spans: trace.spans.map((span) => {
      const kind = span.tags?.find((tag) => tag.key === 'span.kind')?.value;
      return {
        traceID: span.traceID,
        spanID: span.spanID,
        operationName: span.operationName,
        service: trace.processes[span.processID]?.serviceName ?? 'unknown',
        startTime: span.startTime,
        duration: span.duration,
        ...(typeof kind === 'string' ? { kind } : {}),
      };
    }),
  };
}
