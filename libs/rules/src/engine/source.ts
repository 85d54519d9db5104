import { isMap, isScalar, LineCounter, parseDocument, type Document, type Node } from 'yaml';

/** One file of a rule set: its path relative to the rules directory (`temperature.yaml`, `products/thermo.yaml`) and text. */
export interface SourceFile {
  path: string;
  text: string;
}

/** A problem in a rule set, pointing at the file, line and column (1-based) it comes from. */
export interface RuleError {
  file: string;
  line: number;
  column: number;
  message: string;
}

/** `file:line:col: message`, the format editors and CI annotations understand. */
export const formatRuleError = (error: RuleError): string =>
  `${error.file}:${error.line}:${error.column}: ${error.message}`;

export type PathSegment = string | number;

/**
 * A parsed YAML (or JSON: YAML is a superset) file that can tell where any of its values came from:
 * errors found while validating or compiling point at the exact line and column.
 */
export class YamlSource {
  readonly doc: Document.Parsed;
  private readonly lines = new LineCounter();

  constructor(readonly file: SourceFile) {
    this.doc = parseDocument(file.text, {
      lineCounter: this.lines,
      prettyErrors: false,
      uniqueKeys: true,
    });
  }

  /** Syntax errors of the file itself (YAML). */
  syntaxErrors(): RuleError[] {
    return this.doc.errors.map((error) => ({
      ...this.at(error.pos[0]),
      message: `YAML: ${error.message.split('\n')[0]}`,
    }));
  }

  /** Plain data of the document (undefined for an empty file). */
  toJS(): unknown {
    return this.doc.toJS({ maxAliasCount: 100 });
  }

  /** The node at a path (e.g. ['rules', 0, 'when']), or the nearest ancestor that exists. */
  nodeAt(path: readonly PathSegment[]): Node | undefined {
    for (let length = path.length; length >= 0; length--) {
      const node = this.doc.getIn(path.slice(0, length), true) as Node | undefined;
      if (node && typeof node === 'object' && 'range' in node && node.range) return node;
    }
    return this.doc.contents ?? undefined;
  }

  /** An error at the key (not the value) of the last path segment, e.g. an unknown field's name. */
  errorAtKey(path: readonly PathSegment[], message: string): RuleError {
    const parent = this.doc.getIn(path.slice(0, -1), true);
    const key = path[path.length - 1];
    if (isMap(parent)) {
      const pair = parent.items.find((item) => isScalar(item.key) && item.key.value === key);
      const range = pair && isScalar(pair.key) ? pair.key.range : undefined;
      if (range) return { ...this.at(range[0]), message };
    }
    return this.errorAt(path, message);
  }

  /** An error at the value found at `path` (or its nearest existing ancestor). */
  errorAt(path: readonly PathSegment[], message: string): RuleError {
    const node = this.nodeAt(path);
    return { ...this.at(node?.range?.[0] ?? 0), message };
  }

  /**
   * An error inside a string value (e.g. a CEL expression): `offset` is the position in the parsed
   * string, mapped back to the source through quoting, folding and block indentation.
   */
  errorInValue(path: readonly PathSegment[], offset: number, message: string): RuleError {
    const node = this.nodeAt(path);
    if (!node?.range) return { ...this.at(0), message };
    const source = isScalar(node) && typeof node.value === 'string' ? node.value : undefined;
    const position =
      source === undefined ? node.range[0] : sourceOffset(this.file.text, node.range, source, offset);
    return { ...this.at(position), message };
  }

  /**
   * The source text of the value at `path` (e.g. one rule of a `rules:` list), from the start of its
   * first line (indentation and list dash kept) to its end, trailing blank lines dropped.
   */
  textAt(path: readonly PathSegment[]): string {
    const node = this.doc.getIn(path, true) as Node | undefined;
    if (!node?.range) return '';
    const lineStart = this.file.text.lastIndexOf('\n', node.range[0] - 1) + 1;
    return this.file.text.slice(lineStart, node.range[1]).trimEnd();
  }

  at(offset: number): { file: string; line: number; column: number } {
    const { line, col } = this.lines.linePos(Math.max(0, offset));
    return { file: this.file.path, line, column: col };
  }
}

/**
 * Where character `offset` of a scalar's parsed value sits in the source text. The parsed value's
 * characters appear, in order, in the scalar's source (quotes, block headers, indentation and folded
 * line breaks are what lies between them), so walking both in step finds it. Escapes (`\"`) are the
 * one thing that breaks this; the walk then stops at the scalar's end, and the scalar's start is used.
 */
export function sourceOffset(
  text: string,
  range: readonly [number, number, number],
  value: string,
  offset: number,
): number {
  const [start, end] = range;
  let s = start;
  // A block scalar's content starts on the line after its header (`|`, `>-`…).
  const header = text[start];
  if (header === '|' || header === '>') {
    const newline = text.indexOf('\n', start);
    s = newline < 0 ? end : newline + 1;
  } else if (header === '"' || header === "'") {
    s = start + 1;
  }
  const target = Math.min(Math.max(0, offset), value.length);
  for (let v = 0; v < target; v++) {
    const c = value[v];
    while (s < end && text[s] !== c) s++;
    if (s >= end) return start;
    s++;
  }
  // Land on the next non-layout character: the one the offset designates.
  const wanted = value[target];
  if (wanted !== undefined) while (s < end && text[s] !== wanted) s++;
  return s <= end ? s : start;
}
