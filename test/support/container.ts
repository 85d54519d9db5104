/**
 * A container without a container engine: a process chrooted into an image's root folder, in its own
 * mount namespace (`unshare --mount`, as root), where this machine's userland stands in for the base
 * image (/usr, /etc, /dev, /proc, /sys, /tmp and the running Node), compose's volumes are bind mounts at
 * their targets, and /etc/hosts is a file that resolves compose's service names. Commands, working
 * directory, user and environment are the image's and compose's own, unchanged.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { lstatSync, readlinkSync, realpathSync } from 'node:fs';
import { dirname } from 'node:path';

export interface Mount {
  /** A folder or file of this machine… */
  source: string;
  /** …seen at this path inside. */
  target: string;
  readOnly?: boolean;
}

export interface ContainerSpec {
  /** The image's root folder (what its layers hold). */
  root: string;
  /** argv, run as is (the image's ENTRYPOINT, a healthcheck's command, compose's `command`). */
  command: string[];
  workdir: string;
  env: Record<string, string>;
  /** `uid:gid` (the image's USER), root when absent. */
  user?: string;
  /** File resolving compose's service names, mounted on /etc/hosts. */
  hostsFile: string;
  mounts?: Mount[];
}

/** The Node running the tests, at the same path inside: the base image's `node`. */
export const NODE_HOME = dirname(dirname(realpathSync(process.execPath)));
/** PATH inside: the Node image's, with this Node first. */
export const CONTAINER_PATH = `${NODE_HOME}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;

/** This machine's userland, standing in for the base image's. */
const USERLAND = ['usr', 'etc', 'dev', 'proc', 'sys', 'tmp', 'var', 'run'];
/** Merged-/usr links (bin → usr/bin…) are recreated as links; real folders are mounted. */
const LINKS = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

function script(spec: ContainerSpec, extraHostPaths: string[]): string {
  const r = spec.root;
  const lines = ['set -e'];
  const mount = (source: string, target: string, readOnly = false, file = false) => {
    lines.push(
      file
        ? `mkdir -p ${quote(dirname(r + target))} && { [ -e ${quote(r + target)} ] || touch ${quote(r + target)}; }`
        : `mkdir -p ${quote(r + target)}`,
    );
    lines.push(`mount --rbind ${quote(source)} ${quote(r + target)}`);
    if (readOnly) lines.push(`mount -o remount,bind,ro ${quote(r + target)}`);
  };
  for (const name of LINKS) {
    let stat;
    try {
      stat = lstatSync(`/${name}`);
    } catch {
      continue;
    }
    if (stat.isSymbolicLink())
      lines.push(
        `[ -L ${quote(`${r}/${name}`)} ] || ln -s ${quote(readlinkSync(`/${name}`))} ${quote(`${r}/${name}`)}`,
      );
    else mount(`/${name}`, `/${name}`, true);
  }
  for (const name of USERLAND) mount(`/${name}`, `/${name}`, name === 'usr');
  for (const path of extraHostPaths) mount(path, path, true);
  mount(spec.hostsFile, '/etc/hosts', true, true);
  for (const m of spec.mounts ?? []) mount(m.source, m.target, m.readOnly, lstatSync(m.source).isFile());
  const user = spec.user ? `--userspec=${spec.user} ` : '';
  lines.push(
    `exec chroot ${user}${quote(r)} /usr/bin/env -C ${quote(spec.workdir)} -- ${spec.command.map(quote).join(' ')}`,
  );
  return lines.join('\n');
}

/**
 * Starts the container's process. `hostPaths`: folders of this machine that symlinks of the image point
 * into (the installed node_modules, a jar cache), visible at the same path inside.
 */
export function startContainer(spec: ContainerSpec, hostPaths: string[] = []): ChildProcess {
  return spawn(
    'unshare',
    ['--mount', '--propagation', 'private', 'sh', '-c', script(spec, [NODE_HOME, ...hostPaths])],
    {
      env: { PATH: CONTAINER_PATH, ...spec.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
}

/** Runs a command in a container to its end: exit code and output. */
export function runContainer(
  spec: ContainerSpec,
  hostPaths: string[] = [],
  timeoutMs = 120_000,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = startContainer(spec, hostPaths);
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}
