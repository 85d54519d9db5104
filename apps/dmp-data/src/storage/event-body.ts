import { DmpError } from '@dmp/contracts';
import type { z } from 'zod';

/**
 * The event a RocketMQ message body holds (JSON, checked by `schema`). A body that is not one is a bug
 * upstream: a DmpError with `code`, not retryable (the consumer keeps it as a dead letter).
 */
export function parseEventBody<T>(body: Buffer, schema: z.ZodType<T>, code: string, name: string): T {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new DmpError(code, `body is not JSON: ${(error as Error).message}`, false);
  }
  const result = schema.safeParse(json);
  if (result.success) return result.data;
  throw new DmpError(
    code,
    `not an ${name}: ${result.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ')}`,
    false,
  );
}
