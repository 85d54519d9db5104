import { RuleSetErrorCode } from '@dmp/contracts';
import { MetricsRegistry } from '@dmp/observability';
import {
  compileRuleSet,
  formatRuleError,
  invalidRuleFilePath,
  readRuleFiles,
  ruleSetVersion,
  writeRuleFiles,
  type RuleError,
  type RuleSet,
  type SourceFile,
} from '@dmp/rules';
import { Inject, Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Counter, Gauge } from 'prom-client';
import { RouteTopics } from '../actions/route-topics';
import { KERNEL_CONFIG, type KernelConfig } from '../config';

/** A rule set that was refused; the one running before keeps running. */
export class RuleSetRejectedError extends Error {
  readonly code = RuleSetErrorCode.Invalid;
  constructor(readonly errors: RuleError[]) {
    super(`rule set refused:\n  ${errors.map(formatRuleError).join('\n  ')}`);
  }
}

export interface RuleSetInfo {
  version: string;
  generation: number;
  loadedAt: string;
  source: string;
  rules: number;
  products: number;
}

/**
 * Holds the running rule set — one immutable, fully compiled value — and replaces it atomically.
 *
 * Every message takes `current` once, when its evaluation starts, and uses that object to the end:
 * a swap never changes a message's rules halfway, and no message is evaluated twice or skipped because
 * of one (evaluation follows the telemetry stream; a swap is only a reference assignment in between).
 * A candidate set is compiled and checked in full (syntax, types, route topics exist) before it can
 * replace the running one; a broken candidate is refused with file:line:column errors and changes nothing.
 * Loads are serialized: the file watcher and the admin API never interleave.
 */
@Injectable()
export class RuleSetHolder implements OnModuleInit {
  private readonly log = new Logger('RuleSet');
  private running?: RuleSet;
  private generation = 0;
  private loadedAt = new Date(0);
  private source = '';
  private queue: Promise<unknown> = Promise.resolve();
  private readonly listeners = new Set<(ruleSet: RuleSet) => void>();
  readonly dir: string;
  private readonly settleMs: number;
  private readonly reloads: Counter<'result' | 'source'>;
  private readonly versionGauge: Gauge;
  private readonly info: Gauge<'version'>;

  constructor(
    @Inject(KERNEL_CONFIG) config: KernelConfig,
    private readonly routeTopics: RouteTopics,
    metrics: MetricsRegistry,
  ) {
    this.dir = resolve(config.rules.dir);
    this.settleMs = Math.max(20, Math.min(config.rules.watchDebounceMs, 200));
    this.reloads = metrics.counter(
      'dmp_kernel_ruleset_reload_total',
      'Rule set loads, by result (ok | unchanged | refused) and source (startup | file | api)',
      ['result', 'source'],
    );
    this.versionGauge = metrics.gauge(
      'dmp_kernel_ruleset_version',
      'Generation of the running rule set (1 at start-up, +1 per accepted change)',
    );
    this.info = metrics.gauge('dmp_kernel_ruleset_info', 'The running rule set: 1 for its content version', [
      'version',
    ]);
  }

  /** Start-up: the directory's rule set must be valid, or the kernel does not start. */
  async onModuleInit(): Promise<void> {
    const files = await readRuleFiles(this.dir);
    const ruleSet = await this.candidate(files, 'startup');
    this.swap(ruleSet, 'startup');
  }

  /** The running rule set. Take it once per message. */
  get current(): RuleSet {
    if (!this.running) throw new Error('no rule set loaded yet');
    return this.running;
  }

  describe(): RuleSetInfo {
    const ruleSet = this.current;
    return {
      version: ruleSet.version,
      generation: this.generation,
      loadedAt: this.loadedAt.toISOString(),
      source: this.source,
      rules: ruleSet.rules.length,
      products: ruleSet.products.byId.size,
    };
  }

  /** Called after every swap (e.g. to drop caches tied to the old set). */
  onSwap(listener: (ruleSet: RuleSet) => void): void {
    this.listeners.add(listener);
  }

  /**
   * Reads the directory again (file watcher, POST /rules/reload); a broken directory is refused and
   * logged. Files being written in place (truncated, then filled) must not be caught half-way — a
   * truncated file can be valid YAML with fewer rules — so the directory is read until two reads
   * `settleMs` apart agree.
   */
  reloadFromDisk(): Promise<RuleSet | undefined> {
    return this.serialized(async () => {
      const files = await this.readSettled();
      if (ruleSetVersion(files) === this.current.version) {
        this.reloads.inc({ result: 'unchanged', source: 'file' });
        return undefined;
      }
      try {
        const ruleSet = await this.candidate(files, 'file');
        this.swap(ruleSet, 'file');
        return ruleSet;
      } catch (error) {
        if (!(error instanceof RuleSetRejectedError)) throw error;
        this.log.error(`${error.message}\nthe running rule set ${this.current.version} stays in place`);
        return undefined;
      }
    });
  }

  /**
   * Replaces the whole rule set (admin API): validated and compiled first, then written to the rules
   * directory (files stay the source of truth; the watcher then sees its own content and does nothing),
   * then swapped in. Throws RuleSetRejectedError, leaving files and running set untouched.
   */
  replace(files: readonly SourceFile[]): Promise<RuleSet> {
    return this.serialized(async () => {
      const pathErrors = files.flatMap((file) => {
        const problem = invalidRuleFilePath(file.path);
        return problem ? [{ file: file.path, line: 1, column: 1, message: problem }] : [];
      });
      if (pathErrors.length) {
        this.reloads.inc({ result: 'refused', source: 'api' });
        throw new RuleSetRejectedError(pathErrors);
      }
      const ruleSet = await this.candidate(files, 'api');
      if (ruleSet.version === this.current.version) {
        this.reloads.inc({ result: 'unchanged', source: 'api' });
        return this.current;
      }
      await writeRuleFiles(this.dir, files);
      this.swap(ruleSet, 'api');
      return ruleSet;
    });
  }

  private async readSettled(): Promise<SourceFile[]> {
    let files = await readRuleFiles(this.dir);
    for (let attempt = 0; attempt < 10; attempt++) {
      await sleep(this.settleMs);
      const again = await readRuleFiles(this.dir);
      if (ruleSetVersion(again) === ruleSetVersion(files)) return again;
      files = again;
    }
    return files;
  }

  /** Compiles and checks a candidate; throws RuleSetRejectedError. */
  private async candidate(files: readonly SourceFile[], source: string): Promise<RuleSet> {
    const outcome = compileRuleSet(files);
    const errors = outcome.ok ? await this.checkTopics(outcome.ruleSet) : outcome.errors;
    if (errors.length || !outcome.ok) {
      this.reloads.inc({ result: 'refused', source });
      throw new RuleSetRejectedError(errors);
    }
    return outcome.ruleSet;
  }

  private async checkTopics(ruleSet: RuleSet): Promise<RuleError[]> {
    const routes = ruleSet.rules.flatMap((rule) =>
      rule.actions.flatMap((a) => (a.kind === 'route' ? [a] : [])),
    );
    if (routes.length === 0) return [];
    const missing = await this.routeTopics.missing(routes.map((r) => r.topic));
    return routes
      .filter((route) => missing.has(route.topic))
      .map((route) => ({
        ...route.position,
        message: `route: RocketMQ topic "${route.topic}" is not usable (${missing.get(route.topic)}); create it first`,
      }));
  }

  private swap(ruleSet: RuleSet, source: string): void {
    const previous = this.running?.version;
    this.running = ruleSet; // the atomic step: messages that already took the old set keep it
    this.generation += 1;
    this.loadedAt = new Date();
    this.source = source;
    this.reloads.inc({ result: 'ok', source });
    this.versionGauge.set(this.generation);
    this.info.reset();
    this.info.set({ version: ruleSet.version }, 1);
    this.log.log(
      `rule set ${ruleSet.version} running (${ruleSet.rules.length} rules, ${ruleSet.products.byId.size} product models; ` +
        `${previous ? `replaces ${previous}` : 'first'}, from ${source}, generation ${this.generation})`,
    );
    for (const listener of this.listeners) listener(ruleSet);
  }

  private serialized<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }
}
