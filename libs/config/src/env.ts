import { ConfigErrorCode } from '@dmp/contracts';
import { z } from 'zod';

/** Thrown before any server starts when the environment is not a valid configuration. */
export class ConfigError extends Error {
  readonly code = ConfigErrorCode.Invalid;
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

/**
 * A variable that is set must say something. `X=` (an empty or blank value, as a template or a compose
 * file leaves it) is refused rather than read as 0 or false — `Number('')` is 0, and
 * `MQTT_SESSION_EXPIRY_SECONDS=` would silently end the session, with its in-flight messages, on every
 * disconnect. Unset takes the default.
 */
const present = z.string().refine((v) => v.trim() !== '', {
  message: 'is empty: set a value, or unset the variable for its default',
});

/** Number from an environment string, with bounds (decimals allowed). */
export const num = (fallback: number, min = -Number.MAX_VALUE, max = Number.MAX_VALUE) =>
  present.pipe(z.coerce.number<string>().min(min).max(max)).default(fallback);

/** Integer from an environment string, with bounds. */
export const int = (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  present.pipe(z.coerce.number<string>().int().min(min).max(max)).default(fallback);

/** Boolean from an environment string: true/false/1/0/yes/no. */
export const bool = (fallback: boolean) =>
  present
    .pipe(z.enum(['true', 'false', '1', '0', 'yes', 'no']))
    .transform((v) => v === 'true' || v === '1' || v === 'yes')
    .default(fallback);

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
