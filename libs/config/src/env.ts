import { z } from 'zod';

/** Thrown before any server starts when the environment is not a valid configuration. */
export class ConfigError extends Error {
  readonly code = 'DMP_ERR_CONFIG';
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

type Env = Record<string, string | undefined>;
type Section = z.ZodType<unknown, Record<string, unknown>>;
type Sections = Record<string, Section>;
type Parsed<S extends Sections> = { [K in keyof S]: z.output<S[K]> };

/**
 * Parses the environment once, section by section, and reports every invalid variable by
 * name at once. This is the only place in DMP that reads `process.env`.
 */
export function loadConfig<S extends Sections>(sections: S, env: Env = process.env): Parsed<S> {
  const problems: string[] = [];
  const config: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(sections)) {
    const result = schema.safeParse(env);
    if (result.success) config[name] = result.data;
    else
      for (const issue of result.error.issues)
        problems.push(`${issue.path.join('.') || name}: ${issue.message}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config as Parsed<S>;
}

/** Integer from an environment string, with bounds. */
export const int = (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(fallback);

/** Boolean from an environment string: true/false/1/0/yes/no. */
export const bool = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'])
    .default(fallback ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes');

/** Comma-separated list. */
export const list = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    );
