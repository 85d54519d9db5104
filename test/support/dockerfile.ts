/**
 * Builds image folders from a Dockerfile without a container engine: its instructions are read from
 * the file and carried out one by one — COPY from the build context (minus .dockerignore) or from an
 * earlier stage, WORKDIR, ARG, ENV, USER, ENTRYPOINT, HEALTHCHECK, and RUN in a container of the stage
 * (test/support/container.ts). Two RUN commands cannot run here and are reproduced instead: `npm ci`
 * (the lockfile's packages are this checkout's installed node_modules, linked) and
 * `npm prune --omit=dev` (node_modules reduced to the production packages `npm ls --omit=dev` lists).
 * Any other instruction or npm command fails the build: the test must learn it first.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { basename, dirname, join, posix, relative } from 'node:path';
import { CONTAINER_PATH, runContainer } from './container';

export interface Instruction {
  op: string;
  args: string;
}

/** Instructions in order: continuation lines joined, comments and parser directives dropped. */
export function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (!pending && (line.trim() === '' || line.trimStart().startsWith('#'))) continue;
    if (pending && line.trimStart().startsWith('#')) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    const space = full.search(/\s/);
    instructions.push({ op: full.slice(0, space).toUpperCase(), args: full.slice(space + 1).trim() });
  }
  return instructions;
}

/** .dockerignore patterns → a test of a context-relative path (the last matching pattern decides). */
export function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const negate = line.startsWith('!');
      const pattern = posix.normalize(negate ? line.slice(1) : line).replace(/^\/+/, '');
      const regex = pattern
        .split(/(\*\*\/|\*\*|\*|\?)/)
        .map((part) =>
          part === '**/'
            ? '(?:.*/)?'
            : part === '**'
              ? '.*'
              : part === '*'
                ? '[^/]*'
                : part === '?'
                  ? '[^/]'
                  : part.replace(/[.+^${}()|[\]\\]/g, '\\$&'),
        )
        .join('');
      return { negate, regex: new RegExp(`^${regex}$`) };
    });
  return (path: string) => {
    // A pattern matching a folder excludes what is inside it.
    const prefixes = path.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
    let ignored = false;
    for (const { negate, regex } of rules) if (prefixes.some((p) => regex.test(p))) ignored = !negate;
    return ignored;
  };
}

export interface Image {
  root: string;
  workdir: string;
  env: Record<string, string>;
  user?: string;
  entrypoint: string[];
  healthcheck?: string[];
  /** The FROM of the final stage (the base image this machine's userland stands in for). */
  base: string;
}

interface StageState {
  root: string;
  workdir: string;
  env: Record<string, string>;
  args: Record<string, string>;
  user?: string;
  entrypoint: string[];
  healthcheck?: string[];
  base: string;
}

export interface BuildOptions {
  dockerfile: string;
  context: string;
  /** Where the image folders go. */
  outDir: string;
  /** One image per entry: its build args (compose's `build.args`). */
  builds: Record<string, Record<string, string>>;
  /** Folders of this machine that links in the images point into (the installed node_modules). */
  hostPaths: string[];
  log?: (line: string) => void;
}

/**
 * Builds every image of `builds` and returns each one's folder and runtime settings. Builds share their
 * folders as long as the ARG values they can see are the same (Docker's layer cache does the same), so
 * the monorepo is compiled once for all of them.
 */
export async function buildImages(options: BuildOptions): Promise<Record<string, Image>> {
  const { context, outDir } = options;
  const instructions = parseDockerfile(readFileSync(options.dockerfile, 'utf8'));
  const ignoreText = existsSync(`${options.dockerfile}.dockerignore`)
    ? readFileSync(`${options.dockerfile}.dockerignore`, 'utf8')
    : existsSync(join(context, '.dockerignore'))
      ? readFileSync(join(context, '.dockerignore'), 'utf8')
      : '';
  const ignored = dockerignore(ignoreText);
  const keys = Object.keys(options.builds);
  const globalArgs: Record<string, Record<string, string>> = Object.fromEntries(keys.map((k) => [k, {}]));
  /** Finished stages: name → build key → state. */
  const stages = new Map<string, Record<string, StageState>>();
  let current: Record<string, StageState> | undefined;
  let stageName = '';
  let counter = 0;
  const newRoot = () => {
    const root = join(outDir, `layer-${counter++}`);
    mkdirSync(root, { recursive: true });
    chmodSync(root, 0o755);
    return root;
  };
  const subst = (text: string, vars: Record<string, string>) =>
    text.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}?/g, (_, name: string, fallback?: string) =>
      vars[name] !== undefined && vars[name] !== '' ? vars[name] : (fallback ?? ''),
    );
  const declareArg = (target: Record<string, string>, spec: string, key: string) => {
    const [name, ...rest] = spec.split('=');
    const given = options.builds[key][name];
    target[name] = given ?? (rest.length ? rest.join('=') : (globalArgs[key][name] ?? ''));
  };

  const finish = () => {
    if (current) stages.set(stageName, current);
  };
  for (const [index, { op, args }] of instructions.entries()) {
    const where = `${basename(options.dockerfile)} instruction ${index + 1} (${op} ${args.slice(0, 60)})`;
    if (op === 'FROM') {
      finish();
      const [image, as, name] = args.split(/\s+/);
      stageName = as?.toUpperCase() === 'AS' ? name : String(stages.size);
      const shared = newRoot();
      current = Object.fromEntries(
        keys.map((key) => [
          key,
          {
            root: shared,
            workdir: '/',
            env: {},
            args: {},
            entrypoint: [],
            base: subst(image, globalArgs[key]),
          },
        ]),
      );
      continue;
    }
    if (!current) {
      if (op !== 'ARG') throw new Error(`${where}: only ARG may come before FROM`);
      for (const key of keys) declareArg(globalArgs[key], args, key);
      continue;
    }
    const states = current;
    if (op === 'ARG') {
      for (const key of keys) declareArg(states[key].args, args, key);
      // Builds that now see different values go on in folders of their own.
      const byRoot = new Map<string, string[]>();
      for (const key of keys) byRoot.set(states[key].root, [...(byRoot.get(states[key].root) ?? []), key]);
      for (const [root, group] of byRoot) {
        const seen = new Map<string, string>([[JSON.stringify(states[group[0]].args), root]]);
        for (const key of group.slice(1)) {
          const signature = JSON.stringify(states[key].args);
          let copy = seen.get(signature);
          if (!copy) {
            copy = newRoot();
            execFileSync('cp', ['-a', `${root}/.`, copy]);
            seen.set(signature, copy);
          }
          states[key].root = copy;
        }
      }
      continue;
    }
    // Every other instruction runs once per folder, with the state of any build in it.
    const done = new Set<string>();
    for (const key of keys) {
      const state = states[key];
      const vars = { ...state.args, ...state.env };
      if (done.has(state.root)) {
        applyMetadata(op, args, state, vars, subst);
        continue;
      }
      done.add(state.root);
      switch (op) {
        case 'WORKDIR':
          state.workdir = posix.resolve(state.workdir, subst(args, vars));
          mkdirSync(state.root + state.workdir, { recursive: true });
          break;
        case 'COPY': {
          const words = args.split(/\s+/);
          const flags = Object.fromEntries(
            words.filter((w) => w.startsWith('--')).map((w) => w.slice(2).split('=') as [string, string]),
          );
          const [dest, ...sources] = words
            .filter((w) => !w.startsWith('--'))
            .map((w) => subst(w, vars))
            .reverse();
          sources.reverse();
          const target = posix.resolve(state.workdir, dest);
          const intoFolder = dest.endsWith('/') || sources.length > 1;
          for (const source of sources) {
            const from = flags.from;
            const sourcePath = from
              ? requireStage(stages, from, key, where).root + source
              : join(context, source);
            if (!lstatSync(sourcePath, { throwIfNoEntry: false }))
              throw new Error(`${where}: ${source} does not exist`);
            const isFolder = statSync(sourcePath).isDirectory();
            const destination =
              state.root + (intoFolder && !isFolder ? posix.join(target, basename(source)) : target);
            mkdirSync(isFolder ? destination : join(destination, '..'), { recursive: true });
            cpSync(sourcePath, destination, {
              recursive: true,
              verbatimSymlinks: true,
              filter: from ? undefined : (path) => !ignored(relative(context, path).split('\\').join('/')),
            });
            if (flags.chown) execFileSync('chown', ['-hR', flags.chown, destination]);
          }
          break;
        }
        case 'RUN':
          await run(args, state, options, where);
          break;
        default:
          applyMetadata(op, args, state, vars, subst, where);
      }
    }
  }
  finish();
  const final = current!;
  return Object.fromEntries(
    keys.map((key) => {
      const s = final[key];
      return [
        key,
        {
          root: s.root,
          workdir: s.workdir,
          env: s.env,
          user: s.user,
          entrypoint: s.entrypoint,
          healthcheck: s.healthcheck,
          base: s.base,
        },
      ];
    }),
  );
}

function requireStage(
  stages: Map<string, Record<string, StageState>>,
  name: string,
  key: string,
  where: string,
) {
  const stage = stages.get(name)?.[key];
  if (!stage) throw new Error(`${where}: no stage ${name}`);
  return stage;
}

/** Instructions that only set the image's settings. */
function applyMetadata(
  op: string,
  args: string,
  state: StageState,
  vars: Record<string, string>,
  subst: (text: string, vars: Record<string, string>) => string,
  where = op,
): void {
  switch (op) {
    case 'ENV':
      for (const pair of args.match(/[A-Za-z_][A-Za-z0-9_]*=("[^"]*"|\S*)/g) ?? []) {
        const [name, ...value] = pair.split('=');
        state.env[name] = subst(value.join('=').replace(/^"|"$/g, ''), { ...vars, ...state.env });
      }
      break;
    case 'USER':
      state.user = subst(args, vars);
      break;
    case 'ENTRYPOINT':
      state.entrypoint = JSON.parse(args) as string[];
      break;
    case 'HEALTHCHECK':
      state.healthcheck = JSON.parse(args.slice(args.indexOf('CMD') + 3).trim()) as string[];
      break;
    case 'WORKDIR':
      state.workdir = posix.resolve(state.workdir, subst(args, vars));
      break;
    case 'COPY':
    case 'RUN':
      break; // done in the shared folder
    default:
      throw new Error(`${where}: the deployment test does not know the instruction ${op}`);
  }
}

/** RUN: in a container of the stage, except the npm commands that need the registry. */
async function run(args: string, state: StageState, options: BuildOptions, where: string): Promise<void> {
  const command = args.replace(/^(--\S+\s+)+/, '');
  const parts = /\bnpm (ci|install|prune)\b/.test(command) ? command.split(/\s+&&\s+/) : [command];
  const dir = state.root + state.workdir;
  for (const part of parts) {
    if (/^npm ci\b/.test(part)) {
      if (!existsSync(join(dir, 'package-lock.json')))
        throw new Error(`${where}: npm ci without package-lock.json`);
      symlinkSync(realpathSync(join(options.context, 'node_modules')), join(dir, 'node_modules'));
    } else if (/^npm prune --omit=dev\b/.test(part)) {
      prune(dir, options.context);
    } else if (/\bnpm (ci|install|prune)\b/.test(part)) {
      throw new Error(`${where}: the deployment test cannot reproduce \`${part}\``);
    } else {
      options.log?.(`RUN ${part.slice(0, 100)}`);
      const result = await runContainer(
        {
          root: state.root,
          command: ['sh', '-c', part],
          workdir: state.workdir,
          env: { HOME: state.user ? '/tmp' : '/root', PATH: CONTAINER_PATH, ...state.args, ...state.env },
          user: state.user,
          hostsFile: '/etc/hosts',
        },
        options.hostPaths,
        600_000,
      );
      if (result.code !== 0)
        throw new Error(`${where}: \`${part}\` exited with ${result.code}:\n${result.output}`);
    }
  }
}

/** `npm prune --omit=dev` on linked packages: node_modules with only the production ones. */
function prune(dir: string, context: string): void {
  const modules = realpathSync(join(context, 'node_modules'));
  // Where the packages are installed: npm ls misreads a node_modules that is a link to another
  // checkout's (a git worktree sharing one install), and reports its packages missing.
  const listed = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], {
    cwd: dirname(modules),
    maxBuffer: 64 * 1024 * 1024,
  })
    .toString()
    .split('\n')
    .map((line) => relative(modules, line.trim()))
    .filter((path) => path && !path.startsWith('..') && !path.includes('node_modules'));
  const topLevel = listed.filter((path) =>
    path.startsWith('@') ? path.split('/').length === 2 : !path.includes('/'),
  );
  rmSync(join(dir, 'node_modules'), { recursive: true, force: true });
  for (const path of topLevel) {
    mkdirSync(join(dir, 'node_modules', path, '..'), { recursive: true });
    symlinkSync(join(modules, path), join(dir, 'node_modules', path));
  }
}
