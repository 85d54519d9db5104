/**
 * Classifies ClickHouse failures. 18.16 reports `Code: 27, e.displayText() = DB::Exception: …`, a
 * format @clickhouse/client 1.x does not parse into `error.code`, so the code is read from the text.
 */
export function clickhouseErrorCode(error: unknown): number | undefined {
  if (!(error instanceof Error)) return undefined;
  const fromClient = (error as { code?: unknown }).code;
  if (typeof fromClient === 'string' && /^\d+$/.test(fromClient)) return Number(fromClient);
  const match = /Code: (\d+)/.exec(error.message);
  return match ? Number(match[1]) : undefined;
}

/**
 * Server errors caused by the rows themselves: retrying the same rows can never succeed. Everything
 * else (network, timeouts, too many parts, memory, a table missing while an operator fixes it) is
 * worth retrying.
 */
// TOO_MANY_PARTS (252), MEMORY_LIMIT_EXCEEDED (241), TIMEOUT_EXCEEDED (159) are transient: not listed.
const DATA_ERROR_CODES = new Set([
  6, // CANNOT_PARSE_TEXT
  26, // CANNOT_PARSE_QUOTED_STRING
  27, // CANNOT_PARSE_INPUT_ASSERTION_FAILED
  32, // ATTEMPT_TO_READ_AFTER_EOF
  38, // CANNOT_PARSE_DATE
  41, // CANNOT_PARSE_DATETIME
  53, // TYPE_MISMATCH
  69, // ARGUMENT_OUT_OF_BOUND
  70, // CANNOT_CONVERT_TYPE
  72, // CANNOT_PARSE_NUMBER
  117, // INCORRECT_DATA
  131, // TOO_LARGE_STRING_SIZE
  190, // SIZES_OF_ARRAYS_DOESNT_MATCH
  691, // UNKNOWN_ELEMENT_OF_ENUM (18.16 reports an unknown Enum value as LOGICAL_ERROR 49, left out: too broad)
]);

export function isDataError(error: unknown): boolean {
  const code = clickhouseErrorCode(error);
  return code !== undefined && DATA_ERROR_CODES.has(code);
}
