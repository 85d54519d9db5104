import { z } from 'zod';

/**
 * Values that are no secret: what templates, examples and earlier defaults put in place of one. Compared
 * case-insensitively and without punctuation, so `Change_Me` and `<changeme>` are caught too.
 */
export const PLACEHOLDER_SECRETS: readonly string[] = [
  'change-me',
  'change-me-admin-token',
  'changeit',
  'password',
  'passwd',
  'secret',
  'admin',
  'public',
  'default',
  'token',
  'test',
  'example',
  'dmp',
  'dmp-local-admin-token',
  'dmp-emqx-cookie',
  'your-secret-here',
  'replace-me',
  'todo',
  'xxx',
];
const normalize = (value: string) => value.toLowerCase().replace(/[^a-z0-9]/g, '');
const PLACEHOLDER_SET = new Set(PLACEHOLDER_SECRETS.map(normalize));

/** Why `value` cannot be a secret (empty, a known placeholder, too short), or undefined when it can. */
export function secretProblem(value: string, minLength = 1): string | undefined {
  if (value.trim() === '') return 'is empty: set a secret';
  if (PLACEHOLDER_SET.has(normalize(value)) || /^(.)\1*$/.test(value))
    return 'is a placeholder, not a secret: set a random value (e.g. `openssl rand -hex 24`)';
  if (value.length < minLength) return `must be at least ${minLength} characters`;
  return undefined;
}

const refineSecret = (minLength: number) => (value: string, ctx: z.RefinementCtx) => {
  const problem = secretProblem(value, minLength);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
};

/** A token or password the app cannot run without: no default, and no empty or placeholder value. */
export const secret = (minLength = 1) =>
  z
    .string({
      error: (issue) =>
        issue.input === undefined ? 'is required: set a secret (there is no default)' : undefined,
    })
    .superRefine(refineSecret(minLength));

/**
 * A token or password that may be left unset (the feature it guards is then off, or the server has none);
 * when set, the same rules as `secret` apply — an empty value is refused rather than taken as "unset".
 */
export const optionalSecret = (minLength = 1) => z.string().superRefine(refineSecret(minLength)).optional();

/** The password of a `scheme://user:password@host` URL, checked as a secret when the URL has one. */
export const refineUrlPassword = (value: string, ctx: z.RefinementCtx) => {
  let password: string;
  try {
    password = decodeURIComponent(new URL(value).password);
  } catch {
    return; // the URL's own format check reports it
  }
  const problem = password ? secretProblem(password) : undefined;
  if (problem) ctx.addIssue({ code: 'custom', message: `password ${problem}` });
};
