/**
 * `npm run check:folders` — the folders' dependencies point one way.
 *
 * Reads every import of the TypeScript sources (the compiler's own pre-processor, so comments and
 * strings do not count) and reduces it to an edge between folders:
 *
 * - inside an app, between its top-level folders and files under `src/` (`apps/dmp-kernel/ingest`,
 *   `apps/dmp-kernel/config`): no cycles — a folder's `*.config.ts` counts as part of the app's config;
 * - apps import libs, never another app; libs import libs, never an app or a tool, and without cycles;
 * - tools import libs (and other tools, without cycles), never an app's internals;
 * - the end-to-end tests in `test/` may reach anything; nothing imports them.
 *
 * Prints every forbidden edge and every cycle with the imports that make it, and exits 1 if there is any.
 * Runs on Node's own type stripping: `node tools/check-folders/src/main.ts [repository]`.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

// The repository (the first argument, else the one this file is in: tools/check-folders/src/main.ts, run
// as it is, or compiled under dist/).
const SELF = resolve(process.argv[1] ?? '.');
const ROOT = process.argv[2]
  ? resolve(process.argv[2])
  : resolve(dirname(SELF), '../../..', SELF.includes(`${sep}dist${sep}`) ? '..' : '.');
const SOURCE_ROOTS = ['apps', 'libs', 'tools', 'test'];
const ALIAS = /^@dmp\/([^/]+)/;

interface Import {
  file: string;
  line: number;
  specifier: string;
}

/** The folder a source file belongs to, e.g. `apps/dmp-kernel/ingest`, `libs/rules`, `tools/cli`, `test`. */
function unitOf(path: string): string | undefined {
  const parts = path.split(sep).join('/').split('/');
  const [area, name, src, entry] = parts;
  if (area === 'test') return 'test';
  if (area === 'libs' || area === 'tools') return name ? `${area}/${name}` : undefined;
  if (area !== 'apps' || !name) return undefined;
  if (src !== 'src' || !entry) return `apps/${name}`;
  // A folder's `<name>.config.ts` is its section of the app's config, which `config.ts` composes.
  if (parts.length === 5 && /\.config(\.ts)?$/.test(parts[4])) return `apps/${name}/config`;
  return `apps/${name}/${entry.replace(/\.ts$/, '')}`;
}

const areaOf = (unit: string): string => unit.split('/')[0];
const appOf = (unit: string): string | undefined =>
  areaOf(unit) === 'apps' ? unit.split('/')[1] : undefined;

/** Why an edge between two folders is not allowed, or undefined when it is. */
function forbidden(from: string, to: string): string | undefined {
  const [a, b] = [areaOf(from), areaOf(to)];
  if (b === 'test' && a !== 'test') return 'nothing imports the end-to-end tests';
  if (a === 'apps' && b === 'apps' && appOf(from) !== appOf(to)) return 'an app never imports another app';
  if (a === 'apps' && b === 'tools') return 'an app never imports a tool';
  if (a === 'libs' && (b === 'apps' || b === 'tools')) return 'a lib imports only libs';
  if (a === 'tools' && b === 'apps') return "a tool imports libs, never an app's internals";
  return undefined;
}

/** The strongly connected components with more than one folder (Tarjan). */
function cycles(edges: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const visit = (node: string): void => {
    index.set(node, next);
    low.set(node, next++);
    stack.push(node);
    onStack.add(node);
    for (const to of edges.get(node) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(node, Math.min(low.get(node)!, low.get(to)!));
      } else if (onStack.has(to)) low.set(node, Math.min(low.get(node)!, index.get(to)!));
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const node of [...edges.keys()].sort()) if (!index.has(node)) visit(node);
  return found;
}

function sourceFiles(dir: string): string[] {
  if (!existsSync(join(ROOT, dir))) return [];
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

function importsOf(file: string): Import[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const info = ts.preProcessFile(text, true, true);
  const lineOf = (pos: number) => text.slice(0, pos).split('\n').length;
  return info.importedFiles.map((ref) => ({ file, line: lineOf(ref.pos), specifier: ref.fileName }));
}

function targetOf(imp: Import): string | undefined {
  const alias = ALIAS.exec(imp.specifier);
  if (alias) return `libs/${alias[1]}`;
  if (!imp.specifier.startsWith('.')) return undefined;
  return unitOf(relative(ROOT, resolve(ROOT, dirname(imp.file), imp.specifier)));
}

function main(): number {
  const via = new Map<string, Import[]>();
  const edges = new Map<string, Set<string>>();
  for (const file of SOURCE_ROOTS.flatMap(sourceFiles)) {
    const from = unitOf(file);
    if (!from) continue;
    if (!edges.has(from)) edges.set(from, new Set());
    for (const imp of importsOf(file)) {
      const to = targetOf(imp);
      if (!to || to === from) continue;
      edges.get(from)!.add(to);
      const key = `${from} → ${to}`;
      via.set(key, [...(via.get(key) ?? []), imp]);
    }
  }
  const where = (from: string, to: string) =>
    (via.get(`${from} → ${to}`) ?? []).map((imp) => `      ${imp.file}:${imp.line} '${imp.specifier}'`);

  const problems: string[] = [];
  for (const [from, targets] of edges)
    for (const to of targets) {
      const why = forbidden(from, to);
      if (why) problems.push(`  ${from} → ${to}: ${why}`, ...where(from, to));
    }
  for (const component of cycles(edges)) {
    problems.push(`  cycle: ${component.join(', ')}`);
    for (const from of component)
      for (const to of edges.get(from) ?? [])
        if (component.includes(to)) problems.push(`    ${from} → ${to}`, ...where(from, to));
  }
  if (problems.length === 0) {
    console.error(`check-folders: ${edges.size} folders, dependencies point one way`);
    return 0;
  }
  console.error(
    'check-folders: folder dependencies must point one way (tools/check-folders/src/main.ts says why):',
  );
  console.error(problems.join('\n'));
  return 1;
}

process.exitCode = main();
