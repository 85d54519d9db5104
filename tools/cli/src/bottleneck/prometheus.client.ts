/** Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`): just what the analysis reads. */

export interface PromSample {
  metric: Record<string, string>;
  /** [unix seconds, value as text ("NaN", "+Inf" possible)] */
  value: [number, string];
}

export interface PromSeries {
  metric: Record<string, string>;
  values: [number, string][];
}

interface ApiBody<T> {
  status: 'success' | 'error';
  data?: { resultType: string; result: T };
  errorType?: string;
  error?: string;
}

export class PrometheusClient {
  constructor(
    readonly baseUrl: string,
    private readonly timeoutMs = 15_000,
  ) {}

  /** An instant query evaluated at `time`; scalars come back as one sample without labels. */
  async query(expr: string, time: Date): Promise<PromSample[]> {
    const data = await this.call<PromSample[] | [number, string]>('/api/v1/query', {
      query: expr,
      time: String(time.getTime() / 1000),
    });
    if (data.resultType === 'scalar') return [{ metric: {}, value: data.result as [number, string] }];
    return data.result as PromSample[];
  }

  async queryRange(expr: string, start: Date, end: Date, stepSeconds: number): Promise<PromSeries[]> {
    const data = await this.call<PromSeries[]>('/api/v1/query_range', {
      query: expr,
      start: String(start.getTime() / 1000),
      end: String(end.getTime() / 1000),
      step: `${stepSeconds}s`,
    });
    return data.result;
  }

  private async call<T>(
    path: string,
    params: Record<string, string>,
  ): Promise<{ resultType: string; result: T }> {
    const url = new URL(path, this.baseUrl);
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(params),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      throw new Error(`Prometheus at ${this.baseUrl} is unreachable: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const text = await response.text();
    let body: ApiBody<T>;
    try {
      body = JSON.parse(text) as ApiBody<T>;
    } catch {
      throw new Error(`Prometheus ${path}: HTTP ${response.status} ${text.slice(0, 200)}`);
    }
    if (body.status !== 'success' || !body.data)
      throw new Error(
        `Prometheus ${path}: ${body.errorType ?? response.status}: ${body.error ?? text.slice(0, 200)}`,
      );
    return body.data;
  }
}

/** A sample's value as a number; NaN for "NaN" and for no sample. */
export function sampleValue(sample: PromSample | undefined): number {
  return sample ? Number(sample.value[1]) : NaN;
}
