/**
 * SQL literal helpers. ClickHouse 18.16 has no server-side query parameters (`{name:Type}` arrives
 * as an unknown setting `param_name`), so the few values DMP puts in SQL text are quoted here.
 */

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A database, table or column name; only plain identifiers are accepted, so no quoting is needed. */
export function identifier(name: string): string {
  if (!IDENTIFIER.test(name)) throw new Error(`not a plain SQL identifier: ${JSON.stringify(name)}`);
  return name;
}

/** A string literal, escaped the way ClickHouse reads quoted strings. */
export function stringLiteral(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** A list of string literals for `IN (…)`. */
export function stringList(values: Iterable<string>): string {
  return [...values].map(stringLiteral).join(', ');
}
