import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isRuleFileName } from './ruleset';
import type { SourceFile } from './source';

/** Product models live in this sub-folder of the rules directory (any rule file may also declare them). */
export const PRODUCTS_FOLDER = 'products';

/**
 * The rule files of a directory: its YAML/JSON files and those of its `products/` folder, with paths
 * relative to it (`temperature.yaml`, `products/thermo.yaml`). Other files (samples, READMEs) are ignored.
 */
export async function readRuleFiles(dir: string): Promise<SourceFile[]> {
  const files: SourceFile[] = [];
  for (const folder of ['', PRODUCTS_FOLDER]) {
    let names: string[];
    try {
      names = (await readdir(join(dir, folder), { withFileTypes: true }))
        .filter((entry) => entry.isFile() && isRuleFileName(entry.name))
        .map((entry) => entry.name)
        .sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' && folder) continue;
      throw error;
    }
    for (const name of names) {
      const path = folder ? `${folder}/${name}` : name;
      files.push({ path, text: await readFile(join(dir, path), 'utf8') });
    }
  }
  return files;
}

/** Why a path cannot be a rule file's, or undefined when it can (`name.yaml` or `products/name.yaml`). */
export function invalidRuleFilePath(path: string): string | undefined {
  const parts = path.split('/');
  const name = parts[parts.length - 1];
  if (parts.length > 2 || (parts.length === 2 && parts[0] !== PRODUCTS_FOLDER))
    return `${path}: rule files are NAME.yaml or ${PRODUCTS_FOLDER}/NAME.yaml`;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name) || !isRuleFileName(name))
    return `${path}: file names are letters, digits, _ . - and end in .yaml, .yml or .json`;
  return undefined;
}

/**
 * Makes the directory hold exactly these rule files: each written to a temporary file then renamed
 * (a reader never sees half a file), then the rule files not in the set removed.
 */
export async function writeRuleFiles(dir: string, files: readonly SourceFile[]): Promise<void> {
  await mkdir(join(dir, PRODUCTS_FOLDER), { recursive: true });
  const keep = new Set(files.map((f) => f.path));
  for (const file of files) {
    const target = join(dir, file.path);
    const temporary = join(dir, `.${file.path.replace('/', '__')}.${process.pid}.tmp`);
    await writeFile(temporary, file.text, 'utf8');
    await rename(temporary, target);
  }
  for (const existing of await readRuleFiles(dir))
    if (!keep.has(existing.path)) await rm(join(dir, existing.path), { force: true });
}
