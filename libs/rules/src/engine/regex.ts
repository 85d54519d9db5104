import { RE2JS } from 're2js';
import { charge } from './budget';

/**
 * `matches()` in rules: RE2 syntax (as CEL specifies), matched in time linear in the text — a
 * JavaScript RegExp backtracks, and a pattern like `(a+)+$` on device-controlled text would freeze the
 * kernel. RE2 has no look-around and no backreferences; `\d`, `\w`, `\s`, `\b` are ASCII-only.
 * A match anywhere in the text counts (anchor with `^…$` for the whole text), as in CEL.
 */

/** Text characters per budget step (RE2 costs ≈ 15–100 ns a character, a step ≈ 0.2 µs). */
export const REGEX_CHARS_PER_STEP = 10;
/** Budget steps to compile a pattern that is not a literal (≈ 100 µs of CPU). */
export const REGEX_COMPILE_STEPS = 500;
/** Longest pattern accepted (RE2 bounds the compiled program too). */
export const MAX_PATTERN_LENGTH = 1_000;

const COMPILED_CACHE_SIZE = 1_000;
const compiled = new Map<string, RE2JS>();

/** Compiles a pattern (cached); throws an Error whose message says what is wrong with it. */
export function compilePattern(pattern: string): RE2JS {
  const cached = compiled.get(pattern);
  if (cached) return cached;
  if (pattern.length > MAX_PATTERN_LENGTH)
    throw new Error(`regular expression longer than ${MAX_PATTERN_LENGTH} characters`);
  let re: RE2JS;
  try {
    re = RE2JS.compile(pattern);
  } catch (error) {
    throw new Error(`invalid regular expression (RE2 syntax): ${(error as Error).message}`, { cause: error });
  }
  if (compiled.size >= COMPILED_CACHE_SIZE) compiled.delete(compiled.keys().next().value as string);
  compiled.set(pattern, re);
  return re;
}

/** What is wrong with a pattern in RE2 syntax, or undefined if nothing is. */
export function patternError(pattern: string): string | undefined {
  try {
    compilePattern(pattern);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * `text.matches(pattern)`, charged to the evaluation's budget: the text's length always, the compile
 * unless the pattern is a literal of the expression (compiled at load time). Charging never depends on
 * the cache, so that an evaluation's cost is the same on every replica.
 */
export function regexMatches(text: string, pattern: string, literalPattern: boolean): boolean {
  charge(1 + Math.ceil(text.length / REGEX_CHARS_PER_STEP) + (literalPattern ? 0 : REGEX_COMPILE_STEPS));
  return compilePattern(pattern).test(text);
}
