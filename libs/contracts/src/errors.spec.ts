import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import * as contracts from './index';
import { ERROR_CODES, httpStatusOf, isErrorCode, type ErrorCodeInfo } from './errors';

const ROOT = resolve(__dirname, '../../../..');
/** A code as written anywhere: `DMP_ERR_` or `DMP_FILTERED_` and at least one more character (not `DMP_ERR_*`). */
const CODE = /\bDMP_(?:ERR|FILTERED)_[A-Z0-9_]*[A-Z0-9]\b/g;

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.spec.ts'))
    .map((e) => join(e.parentPath, e.name));
}

/** Codes found in files, by code, with where each was seen. */
function codesIn(files: string[]): Map<string, string> {
  const found = new Map<string, string>();
  for (const file of files)
    for (const [code] of readFileSync(file, 'utf8').matchAll(CODE))
      if (!found.has(code)) found.set(code, relative(ROOT, file));
  return found;
}

/** The rows of docs/operations.md's "Error codes" table: code → its cells. */
function documentedTable(): Map<string, string[]> {
  const text = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
  const start = text.indexOf('\n## Error codes\n');
  assert.ok(start >= 0, 'docs/operations.md has a section "Error codes"');
  const section = text.slice(start + 1, text.indexOf('\n## ', start + 1));
  const rows = new Map<string, string[]>();
  for (const line of section.split('\n')) {
    const match = /^\| `([A-Z0-9_]+)`\s*\|(.*)\|$/.exec(line);
    if (match)
      rows.set(
        match[1],
        match[2].split('|').map((cell) => cell.trim()),
      );
  }
  return rows;
}

describe('the error-code registry', () => {
  const codes = Object.keys(ERROR_CODES);

  it('registers every code that the apps, libraries and tools use', () => {
    const found = codesIn(['apps', 'libs', 'tools'].flatMap(sourceFiles));
    assert.ok(found.size >= 50, `found only ${found.size} codes: is the scan looking in the right place?`);
    const unregistered = [...found]
      .filter(([code]) => !isErrorCode(code))
      .map(([c, file]) => `${c} (${file})`);
    assert.deepEqual(unregistered, []);
  });

  it('defines each code once: every group value is a registered code, in exactly one group', () => {
    const owner = new Map<string, string>();
    for (const [name, value] of Object.entries(contracts)) {
      if (!/Code$/.test(name) || typeof value !== 'object' || value === null || name === 'ERROR_CODES')
        continue;
      for (const code of Object.values(value as Record<string, unknown>)) {
        assert.ok(typeof code === 'string' && isErrorCode(code), `${name}: ${String(code)} is registered`);
        assert.equal(owner.get(code), undefined, `${code} is in ${owner.get(code)} and ${name}`);
        owner.set(code, name);
      }
    }
    assert.ok(owner.size >= 50, `the groups hold ${owner.size} codes`);
  });

  it('gives every code a well-formed name, an owner, where it is seen and a meaning', () => {
    for (const [code, info] of Object.entries(ERROR_CODES) as [string, ErrorCodeInfo][]) {
      assert.match(code, /^DMP_(ERR|FILTERED)_[A-Z0-9]+(_[A-Z0-9]+)*$/);
      assert.ok(info.owners.length > 0 && info.seen && info.meaning, code);
      if (info.http !== undefined)
        assert.ok(info.seen.includes(`admin API ${info.http}`), `${code}: ${info.seen}`);
      if (info.grpc !== undefined) assert.ok(info.seen.includes(info.grpc), `${code}: ${info.seen}`);
    }
    assert.equal(httpStatusOf('DMP_ERR_ALARM_NOT_FOUND'), 404);
    assert.equal(httpStatusOf('DMP_ERR_LANE_FULL'), undefined);
    assert.equal(httpStatusOf('DMP_ERR_NOT_A_CODE'), undefined);
    assert.equal(isErrorCode('constructor'), false);
  });

  it('is what docs/operations.md lists under "Error codes", row for row', () => {
    const table = documentedTable();
    assert.deepEqual([...table.keys()], codes, 'the same codes, in the same order');
    for (const [code, info] of Object.entries(ERROR_CODES) as [string, ErrorCodeInfo][])
      assert.deepEqual(table.get(code), [info.owners.join(', '), info.seen, info.meaning], code);
  });

  it('has every code the docs mention registered', () => {
    const docs = readdirSync(join(ROOT, 'docs'), { recursive: true, encoding: 'utf8' })
      .filter((name) => name.endsWith('.md'))
      .map((name) => join(ROOT, 'docs', name));
    const found = codesIn([...docs, join(ROOT, 'README.md')]);
    const unregistered = [...found]
      .filter(([code]) => !isErrorCode(code))
      .map(([c, file]) => `${c} (${file})`);
    assert.deepEqual(unregistered, []);
  });
});
