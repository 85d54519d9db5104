import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';

// The check runs from its source (Node's type stripping), as `npm run check:folders` runs it.
const CHECK = join(__dirname, '../../../../tools/check-folders/src/main.ts');
// The build rewrites `from '@dmp/…'` in the compiled output, string literals included: spelled apart.
const DMP = '@' + 'dmp';
const roots: string[] = [];
after(() => roots.forEach((root) => rmSync(root, { recursive: true, force: true })));

/** Runs the check on a repository made of `files` (path → source). */
function check(files: Record<string, string>): { status: number | null; output: string } {
  const root = mkdtempSync(join(tmpdir(), 'dmp-check-folders-'));
  roots.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  const run = spawnSync(process.execPath, ['--disable-warning=MODULE_TYPELESS_PACKAGE_JSON', CHECK, root], {
    encoding: 'utf8',
  });
  return { status: run.status, output: run.stdout + run.stderr };
}

describe('check-folders', () => {
  it('passes folders whose imports point one way', () => {
    const { status, output } = check({
      'apps/a/src/main.ts': "import { x } from './ingest/ingest';\n",
      'apps/a/src/config.ts': "import { section } from './ingest/ingest.config';\n",
      'apps/a/src/ingest/ingest.config.ts': 'export const section = 1;\n',
      'apps/a/src/ingest/ingest.ts': `import { section } from '../config';\nimport { rule } from '${DMP}/rules';\nexport const x = 1;\n`,
      'libs/rules/src/index.ts': `import { c } from '${DMP}/contracts';\nexport const rule = 1;\n`,
      'libs/contracts/src/index.ts': 'export const c = 1;\n',
      'tools/cli/src/main.ts': `import { rule } from '${DMP}/rules';\n`,
      'test/a.e2e-spec.ts': "import { x } from '../apps/a/src/ingest/ingest';\n",
    });
    assert.equal(status, 0, output);
    assert.match(output, /dependencies point one way/);
  });

  it("fails on a cycle between an app's folders, naming the imports", () => {
    const { status, output } = check({
      'apps/a/src/alarms/alarm.ts': "import { e } from '../evaluation/evaluate';\nexport const a = 1;\n",
      'apps/a/src/evaluation/evaluate.ts':
        "// import { a } from '../alarms/alarm'; (a comment)\nexport const e = 1;\n",
      'apps/a/src/evaluation/state.ts': "import { a } from '../alarms/alarm';\n",
    });
    assert.equal(status, 1, output);
    assert.match(output, /cycle: apps\/a\/alarms, apps\/a\/evaluation/);
    assert.match(output, /apps\/a\/src\/evaluation\/state\.ts:1 '\.\.\/alarms\/alarm'/);
    assert.doesNotMatch(output, /evaluate\.ts:1/);
  });

  it("fails on a tool importing an app's internals, a lib importing an app, and a cycle of libs", () => {
    const { status, output } = check({
      'apps/a/src/rules/engine.ts': 'export const e = 1;\n',
      'tools/cli/src/main.ts': "import { e } from '../../../apps/a/src/rules/engine';\n",
      'libs/config/src/index.ts': `import { c } from '${DMP}/contracts';\nimport { e } from '../../../apps/a/src/rules/engine';\n`,
      'libs/contracts/src/index.ts': `import { s } from '${DMP}/config';\nexport const c = 1;\n`,
    });
    assert.equal(status, 1, output);
    assert.match(output, /tools\/cli → apps\/a\/rules: a tool imports libs, never an app's internals/);
    assert.match(output, /libs\/config → apps\/a\/rules: a lib imports only libs/);
    assert.match(output, /cycle: libs\/config, libs\/contracts/);
  });

  it('fails on an app importing another app', () => {
    const { status, output } = check({
      'apps/a/src/x/x.ts': "import { y } from '../../../b/src/y/y';\n",
      'apps/b/src/y/y.ts': 'export const y = 1;\n',
    });
    assert.equal(status, 1, output);
    assert.match(output, /apps\/a\/x → apps\/b\/y: an app never imports another app/);
  });
});
