import { PRODUCTS_FOLDER } from '@dmp/rules';
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { existsSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { RuleSetHolder } from './rule-set.holder';

/**
 * Hot reload from the files: any change in the rules directory (or its products/ folder), debounced,
 * reloads the whole rule set — swapped atomically if valid, refused and logged (the running set stays)
 * if not. Changes made through the admin API come back here as file events and are recognized as the
 * running content (no second swap).
 */
@Injectable()
export class RulesWatcher implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger('RulesWatcher');
  private readonly watchers: FSWatcher[] = [];
  private readonly watched = new Set<string>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly holder: RuleSetHolder,
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.config.rules.watch) return;
    this.watchFolders();
    if (this.watchers.length) this.log.log(`watching ${this.holder.dir} for rule changes`);
  }

  /**
   * One (non-recursive) watcher per folder — the rules directory and its products/ folder, also when that
   * appears later: directory watches see files replaced by rename, which is how editors and the admin API
   * write them.
   */
  private watchFolders(): void {
    for (const dir of [this.holder.dir, join(this.holder.dir, PRODUCTS_FOLDER)]) {
      if (this.watched.has(dir) || !existsSync(dir)) continue;
      try {
        const watcher = watch(dir, (_event, name) => {
          if (name && String(name).startsWith('.')) return; // temporary files of atomic writes
          this.watchFolders();
          this.debounce();
        });
        watcher.on('error', (error) => this.log.warn(`watching ${dir}: ${error.message}`));
        this.watchers.push(watcher);
        this.watched.add(dir);
      } catch (error) {
        this.log.warn(`cannot watch ${dir} (${(error as Error).message}); reload with POST /rules/reload`);
      }
    }
  }

  onApplicationShutdown(): void {
    clearTimeout(this.timer);
    for (const watcher of this.watchers.splice(0)) watcher.close();
  }

  private debounce(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.holder
        .reloadFromDisk()
        .catch((error: unknown) => this.log.error(`reload failed: ${(error as Error).message}`));
    }, this.config.rules.watchDebounceMs);
  }
}
