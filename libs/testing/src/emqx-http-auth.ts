/**
 * EMQX 5.8's HTTP authenticator and authorizer, as far as a test needs them to call dmp-mqtt the way EMQX
 * does: read the HTTP sources from emqx.conf (HOCON), apply `EMQX_*` environment overrides, render a
 * request from the source's templates, and read the answer as EMQX reads it. Pure functions; each one
 * names the EMQX source it follows (emqx/emqx at v5.8.8, hocon 0.43.4).
 */

export type HoconValue = string | number | boolean | null | HoconValue[] | HoconObject;
export interface HoconObject {
  [key: string]: HoconValue;
}

// ── HOCON (the subset emqx.conf uses) ──────────────────────────────────────────────────────────────

type Token =
  | { kind: 'punct'; value: '{' | '}' | '[' | ']' | '=' | ',' | 'nl' }
  | { kind: 'string'; value: string; quoted: boolean; spaceBefore: boolean };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let spaceBefore = false;
  while (i < text.length) {
    const c = text[i];
    if (c === '\n') {
      tokens.push({ kind: 'punct', value: 'nl' });
      i++;
    } else if (c === ' ' || c === '\t' || c === '\r') {
      spaceBefore = true;
      i++;
      continue;
    } else if (c === '#' || text.startsWith('//', i)) {
      while (i < text.length && text[i] !== '\n') i++;
    } else if ('{}[],'.includes(c)) {
      tokens.push({ kind: 'punct', value: c as '{' });
      i++;
    } else if (c === '=' || c === ':') {
      tokens.push({ kind: 'punct', value: '=' });
      i++;
    } else if (text.startsWith('"""', i)) {
      const end = text.indexOf('"""', i + 3);
      if (end < 0) throw new Error('HOCON: unterminated """ string');
      tokens.push({ kind: 'string', value: text.slice(i + 3, end), quoted: true, spaceBefore });
      i = end + 3;
    } else if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (j >= text.length) throw new Error('HOCON: unterminated string');
      tokens.push({
        kind: 'string',
        value: JSON.parse(text.slice(i, j + 1)) as string,
        quoted: true,
        spaceBefore,
      });
      i = j + 1;
    } else if (text.startsWith('${', i)) {
      // hocon resolves `${path}` against the configuration itself, never the environment (its README:
      // "Environment variable interpolation is not supported"); emqx.conf has no use for it.
      throw new Error(`HOCON: substitution ${text.slice(i, text.indexOf('}', i) + 1)} is not supported here`);
    } else {
      let j = i;
      while (j < text.length && !' \t\r\n{}[],=:"#'.includes(text[j]) && !text.startsWith('//', j)) j++;
      const word = text.slice(i, j);
      if (word === 'include') throw new Error('HOCON: include is not supported here');
      tokens.push({ kind: 'string', value: word, quoted: false, spaceBefore });
      i = j;
    }
    spaceBefore = false;
  }
  return tokens;
}

const NUMBER = /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/;

function scalar(parts: Extract<Token, { kind: 'string' }>[]): HoconValue {
  if (parts.length === 1 && !parts[0].quoted) {
    const word = parts[0].value;
    if (word === 'true' || word === 'false') return word === 'true';
    if (word === 'null') return null;
    if (NUMBER.test(word)) return Number(word);
  }
  // Value concatenation: adjacent simple values join into one string, keeping the spaces between them.
  return parts.map((p, n) => (n > 0 && p.spaceBefore ? ' ' : '') + p.value).join('');
}

const isObject = (value: HoconValue | undefined): value is HoconObject =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** HOCON merge: a key set twice to objects merges them; anything else, the later value wins. */
function merge(into: HoconObject, key: string, value: HoconValue): void {
  const existing = into[key];
  if (isObject(existing) && isObject(value))
    for (const [k, v] of Object.entries(value)) merge(existing, k, v);
  else into[key] = value;
}

class Parser {
  private at = 0;
  constructor(private readonly tokens: Token[]) {}

  root(): HoconObject {
    this.skip('nl', ',');
    const braced = this.peekPunct('{');
    if (braced) this.at++;
    const object = this.fields(braced ? '}' : undefined);
    if (braced) this.expect('}');
    this.skip('nl', ',');
    if (this.at < this.tokens.length) throw new Error('HOCON: unexpected content after the root object');
    return object;
  }

  private fields(close: '}' | undefined): HoconObject {
    const object: HoconObject = {};
    for (;;) {
      this.skip('nl', ',');
      const token = this.tokens[this.at];
      if (!token || (close && token.kind === 'punct' && token.value === close)) return object;
      if (token.kind !== 'string') throw new Error(`HOCON: a key expected, got ${token.value}`);
      this.at++;
      // An unquoted key is a path (`listeners.ssl.default`); a quoted one is a single key.
      const path = token.quoted ? [token.value] : token.value.split('.');
      let value: HoconValue;
      if (this.peekPunct('{')) value = this.value();
      else {
        this.expect('=');
        value = this.value();
      }
      let target = object;
      for (const key of path.slice(0, -1)) {
        if (!isObject(target[key])) target[key] = {};
        target = target[key];
      }
      merge(target, path.at(-1)!, value);
    }
  }

  private value(): HoconValue {
    this.skip('nl');
    const token = this.tokens[this.at];
    if (!token) throw new Error('HOCON: a value expected at the end');
    if (token.kind === 'punct' && token.value === '{') {
      this.at++;
      const object = this.fields('}');
      this.expect('}');
      return object;
    }
    if (token.kind === 'punct' && token.value === '[') {
      this.at++;
      const array: HoconValue[] = [];
      for (;;) {
        this.skip('nl', ',');
        if (this.peekPunct(']')) break;
        array.push(this.value());
      }
      this.expect(']');
      return array;
    }
    const parts: Extract<Token, { kind: 'string' }>[] = [];
    for (let next = this.tokens[this.at]; next?.kind === 'string'; next = this.tokens[this.at]) {
      parts.push(next);
      this.at++;
    }
    if (parts.length === 0) throw new Error(`HOCON: a value expected, got ${token.value}`);
    return scalar(parts);
  }

  private peekPunct(value: string): boolean {
    const token = this.tokens[this.at];
    return token?.kind === 'punct' && token.value === value;
  }

  private expect(value: string): void {
    if (!this.peekPunct(value)) throw new Error(`HOCON: ${value} expected`);
    this.at++;
  }

  private skip(...values: string[]): void {
    while (values.some((v) => this.peekPunct(v))) this.at++;
  }
}

/** Parses HOCON as EMQX's emqx.conf uses it (objects, arrays, dotted keys, merging, comments). */
export function parseHocon(text: string): HoconObject {
  return new Parser(tokenize(text)).root();
}

// ── EMQX_* environment overrides ──────────────────────────────────────────────────────────────────

/**
 * Applies `EMQX_*` variables the way hocon_tconf does (EMQX's bin/emqx sets HOCON_ENV_OVERRIDE_PREFIX=EMQX_):
 * the name minus the prefix, lower-cased, split on `__`, is a path; numbers index arrays from 1; the value
 * is parsed as HOCON (`fake_key=<value>`), or taken as a string when it is not HOCON; it replaces what is
 * at that path. Variables apply in name order. hocon keeps only paths its schema knows: keys inside a
 * `headers` map are not schema paths (the map's type is a plain typerefl map()), so such a variable is
 * dropped with an "unknown_env_vars" warning — refused here instead, so that a test cannot rely on it.
 */
export function applyEmqxEnvOverrides(
  conf: HoconObject,
  env: Record<string, string | undefined>,
): HoconObject {
  const result = structuredClone(conf);
  for (const name of Object.keys(env).sort()) {
    const raw = env[name];
    if (!name.startsWith('EMQX_') || raw === undefined) continue;
    const path = name.slice(5).toLowerCase().split('__').filter(Boolean);
    if (path.length === 0) continue;
    const headers = path.indexOf('headers');
    if (headers >= 0 && headers < path.length - 1)
      throw new Error(`${name}: EMQX ignores overrides inside a headers map — set the whole map`);
    put(result, path, envValue(raw), name);
  }
  return result;
}

function envValue(raw: string): HoconValue {
  if (raw === '') return '';
  try {
    return parseHocon(`fake_key=${raw}`).fake_key ?? raw;
  } catch {
    return raw;
  }
}

function put(container: HoconObject | HoconValue[], path: string[], value: HoconValue, name: string): void {
  const [key, ...rest] = path as [string, ...string[]];
  if (Array.isArray(container)) {
    const index = Number(key);
    if (!Number.isInteger(index) || index < 1 || index > container.length + 1)
      throw new Error(`${name}: bad array index ${key} (arrays count from 1)`);
    if (rest.length === 0) container[index - 1] = value;
    else {
      const element = container[index - 1];
      const next = isObject(element) || Array.isArray(element) ? element : (container[index - 1] = {});
      put(next, rest, value, name);
    }
    return;
  }
  if (rest.length === 0) {
    container[key] = value;
    return;
  }
  const existing = container[key];
  const next = isObject(existing) || Array.isArray(existing) ? existing : (container[key] = {});
  put(next, rest, value, name);
}

// ── The HTTP sources and their requests ───────────────────────────────────────────────────────────

export type EmqxHttpKind = 'authn' | 'authz';

export interface EmqxHttpSource {
  kind: EmqxHttpKind;
  /** Position in `authentication` / `authorization.sources`, from 1 as EMQX_* overrides count. */
  position: number;
  /** The EMQX_* variable that replaces this source's headers (header keys are not schema paths). */
  headersEnvName: string;
  method: 'get' | 'post';
  url: URL;
  /** Header templates, names lower-cased as EMQX's converter leaves them. */
  headers: Record<string, string>;
  /** Body templates (keys and values). */
  body: Record<string, string>;
}

/**
 * Headers EMQX sends when a source sets none (emqx_auth_http_utils:default_headers/0); a source that sets
 * `headers` replaces them all.
 */
const DEFAULT_HEADERS: Record<string, string> = {
  accept: 'application/json',
  'cache-control': 'no-cache',
  connection: 'keep-alive',
  'keep-alive': 'timeout=30, max=1000',
};

/** The enabled HTTP authenticator and HTTP authorization source of an EMQX configuration. */
export function emqxHttpSources(conf: HoconObject): Record<EmqxHttpKind, EmqxHttpSource> {
  const chain = asArray(conf.authentication, 'authentication');
  const authorization = conf.authorization;
  const sources = asArray(
    isObject(authorization) ? authorization.sources : undefined,
    'authorization.sources',
  );
  const authn = chain.findIndex(
    (a) => isObject(a) && a.backend === 'http' && a.mechanism === 'password_based' && a.enable !== false,
  );
  const authz = sources.findIndex((s) => isObject(s) && s.type === 'http' && s.enable !== false);
  if (authn < 0) throw new Error('emqx.conf: no enabled HTTP authenticator in `authentication`');
  if (authz < 0) throw new Error('emqx.conf: no enabled HTTP source in `authorization.sources`');
  return {
    authn: httpSource(
      'authn',
      chain[authn] as HoconObject,
      authn + 1,
      `EMQX_AUTHENTICATION__${authn + 1}__HEADERS`,
    ),
    authz: httpSource(
      'authz',
      sources[authz] as HoconObject,
      authz + 1,
      `EMQX_AUTHORIZATION__SOURCES__${authz + 1}__HEADERS`,
    ),
  };
}

function asArray(value: HoconValue | undefined, what: string): HoconValue[] {
  if (Array.isArray(value)) return value;
  // emqx_authn_schema:ensure_array/2: a single authenticator may be written without brackets.
  if (isObject(value)) return [value];
  throw new Error(`emqx.conf: ${what} is not a list`);
}

function httpSource(
  kind: EmqxHttpKind,
  raw: HoconObject,
  position: number,
  headersEnvName: string,
): EmqxHttpSource {
  const text = (value: HoconValue | undefined, what: string) => {
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')
      return String(value);
    throw new Error(`emqx.conf ${kind}: ${what} must be a string`);
  };
  const method = text(raw.method, 'method');
  if (method !== 'get' && method !== 'post') throw new Error(`emqx.conf ${kind}: method must be get or post`);
  const url = new URL(text(raw.url, 'url'));
  const stringMap = (value: HoconValue | undefined, what: string) => {
    if (value === undefined) return undefined;
    if (!isObject(value)) throw new Error(`emqx.conf ${kind}: ${what} must be an object`);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, text(v, `${what}.${k}`)]));
  };
  const given = stringMap(raw.headers, 'headers');
  let headers = given
    ? Object.fromEntries(Object.entries(given).map(([k, v]) => [k.toLowerCase(), v]))
    : method === 'post'
      ? { ...DEFAULT_HEADERS, 'content-type': 'application/json' }
      : { ...DEFAULT_HEADERS };
  if (method === 'get') delete headers['content-type'];
  // emqx_authn_http:check_method_headers/1 adds a JSON content type to a POST that names none.
  else if (kind === 'authn') headers = { 'content-type': 'application/json', ...headers };
  return { kind, position, headersEnvName, method, url, headers, body: stringMap(raw.body, 'body') ?? {} };
}

/**
 * Placeholders each source may use (AUTHN_DEFAULT_ALLOWED_VARS in emqx_authn.hrl; ?ALLOWED_VARS plus the
 * rich-action ones in emqx_authz_http.erl), and `client_attrs.*` for both. Others are sent as written,
 * `${name}` and all.
 */
const ALLOWED: Record<EmqxHttpKind, readonly string[]> = {
  authn: [
    'username',
    'clientid',
    'password',
    'peerhost',
    'cert_subject',
    'cert_common_name',
    'cert_pem',
    'zone',
  ],
  authz: [
    'username',
    'clientid',
    'peerhost',
    'proto_name',
    'mountpoint',
    'topic',
    'action',
    'cert_subject',
    'cert_common_name',
    'cert_pem',
    'access',
    'qos',
    'retain',
  ],
};

/** What EMQX knows of a client (and, for authz, of the request) when it renders a template. */
export interface EmqxClientInfo {
  /** As the client sent it; an empty client id is replaced by a random one first (see emqxAssignedClientId). */
  clientid: string;
  /** undefined when the CONNECT had none: rendered as "". */
  username?: string;
  password?: string;
  /** As inet:ntoa/1 prints the peer address: "10.1.2.3", "2001:db8::1", "::ffff:10.1.2.3". */
  peerhost: string;
  topic?: string;
  action?: 'publish' | 'subscribe';
  qos?: 0 | 1 | 2;
  retain?: boolean;
  [name: string]: string | number | boolean | undefined;
}

/**
 * The client id EMQX authenticates a client with that sent an empty one (emqx_channel:maybe_assign_clientid/2:
 * emqx_utils:rand_id(16), a letter and 15 base-62 characters) — a fresh random one per connection.
 */
export function emqxAssignedClientId(sent: string): string {
  if (sent !== '') return sent;
  const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  const pick = (from: number) => alphabet[from + Math.floor(Math.random() * (alphabet.length - from))];
  return pick(10) + Array.from({ length: 15 }, () => pick(0)).join('');
}

const PLACEHOLDER = /\$\{[.]?([a-zA-Z0-9._]*)\}|\$\{\$\}/g;

/** emqx_template:render/3 with emqx_auth_utils' converters: unknown or undefined values become "". */
function renderTemplate(
  template: string,
  kind: EmqxHttpKind,
  info: EmqxClientInfo,
  encode: (value: string) => string = (v) => v,
): string {
  return template.replace(PLACEHOLDER, (match, name: string | undefined) => {
    if (name === undefined) return '$';
    if (!ALLOWED[kind].includes(name) && !name.startsWith('client_attrs.')) return match;
    const value = kind === 'authz' && name === 'access' ? accessOf(info.action) : info[name];
    return encode(value === undefined ? '' : String(value));
  });
}

/** The legacy `${access}`: 1 subscribe, 2 publish (emqx_authz_http:add_legacy_access_var/1). */
const accessOf = (action: EmqxClientInfo['action']) =>
  action === 'subscribe' ? '1' : action === 'publish' ? '2' : undefined;

/**
 * uri_string:compose_query/1 (form-urlencoded): UTF-8, unreserved characters (A–Z a–z 0–9 - . _ ~) kept,
 * spaces as "+", everything else %XX.
 */
const formComponent = (value: string) =>
  encodeURIComponent(value)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+');
const formEncode = (pairs: [string, string][]) =>
  pairs.map(([k, v]) => `${formComponent(k)}=${formComponent(v)}`).join('&');

export interface EmqxHttpRequest {
  method: 'GET' | 'POST';
  /** Path and query, as sent. */
  path: string;
  headers: Record<string, string>;
  body?: string;
}

/**
 * The request EMQX sends for `info` (emqx_auth_utils:generate_request/2): path placeholders URL-encoded,
 * headers rendered as they are, the body as JSON when the content type is exactly application/json, as a
 * form when it is application/x-www-form-urlencoded (anything else fails in EMQX); a GET carries the body's
 * fields in its query.
 */
export function renderEmqxHttpRequest(source: EmqxHttpSource, info: EmqxClientInfo): EmqxHttpRequest {
  const { kind } = source;
  const path = renderTemplate(decodeURIComponent(source.url.pathname), kind, info, formComponent);
  const query: [string, string][] = [...source.url.searchParams].map(([k, v]) => [
    renderTemplate(k, kind, info),
    renderTemplate(v, kind, info),
  ]);
  const headers = Object.fromEntries(
    Object.entries(source.headers).map(([k, v]) => [
      renderTemplate(k, kind, info),
      renderTemplate(v, kind, info),
    ]),
  );
  const body: [string, string][] = Object.entries(source.body).map(([k, v]) => [
    renderTemplate(k, kind, info),
    renderTemplate(v, kind, info),
  ]);
  const withQuery = (pairs: [string, string][]) => (pairs.length ? `${path}?${formEncode(pairs)}` : path);
  if (source.method === 'get') return { method: 'GET', path: withQuery([...query, ...body]), headers };
  const contentType = headers['content-type'] ?? 'application/json';
  let serialized: string;
  if (contentType === 'application/json') serialized = JSON.stringify(Object.fromEntries(body));
  else if (contentType === 'application/x-www-form-urlencoded') serialized = formEncode(body);
  else throw new Error(`EMQX cannot send a ${kind} body as ${contentType}`);
  return { method: 'POST', path: withQuery(query), headers, body: serialized };
}

// ── Reading the answer ────────────────────────────────────────────────────────────────────────────

export type EmqxAuthnOutcome = { result: 'allow'; isSuperuser: boolean } | { result: 'deny' | 'ignore' };
export type EmqxAuthzOutcome = 'allow' | 'deny' | 'ignore' | 'nomatch';

function parseAnswerBody(contentType: string | undefined, body: string): Record<string, unknown> | undefined {
  try {
    if (contentType?.startsWith('application/json')) {
      const parsed: unknown = JSON.parse(body);
      return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
        ? (parsed as Record<string, unknown>)
        : undefined;
    }
    if (contentType?.startsWith('application/x-www-form-urlencoded'))
      return Object.fromEntries(new URLSearchParams(body));
  } catch {
    // EMQX treats an unreadable body like a missing one.
  }
  return undefined;
}

/** emqx_authn_utils:to_bool/1. */
function toBool(value: unknown): boolean {
  if (value === true) return true;
  if (typeof value === 'number') return Number.isInteger(value) && value >= 1;
  if (typeof value === 'string') return value === 'true' || (/^[+-]?\d+$/.test(value) && Number(value) >= 1);
  return false;
}

/**
 * How EMQX 5.8's HTTP authenticator reads an answer (emqx_authn_http:authenticate/2): 204 → allow (not a
 * superuser); 200 with a JSON or form body → its `result`: "allow" (with `is_superuser`), "deny", anything
 * else or an unreadable body → ignore; any other status → ignore (the next authenticator decides; after
 * the last one, the connection is refused).
 */
export function emqxAuthnOutcome(
  status: number,
  contentType: string | undefined,
  body: string,
): EmqxAuthnOutcome {
  if (status === 204) return { result: 'allow', isSuperuser: false };
  if (status !== 200) return { result: 'ignore' };
  const parsed = parseAnswerBody(contentType, body);
  const result = parsed?.result ?? 'ignore';
  if (result === 'allow') return { result: 'allow', isSuperuser: toBool(parsed?.is_superuser) };
  return { result: result === 'deny' ? 'deny' : 'ignore' };
}

/**
 * How EMQX 5.8's HTTP authorizer reads an answer (emqx_authz_http:authorize/4): 204 → allow; 200 → the
 * body's `result` (allow, deny, ignore; a missing content type counts as JSON), an unreadable body or
 * another result → nomatch; any other status → nomatch (the next source, then `no_match`, decides).
 */
export function emqxAuthzOutcome(
  status: number,
  contentType: string | undefined,
  body: string,
): EmqxAuthzOutcome {
  if (status === 204) return 'allow';
  if (status !== 200) return 'nomatch';
  const parsed = parseAnswerBody(contentType ?? 'application/json', body);
  const result = parsed?.result;
  return result === 'allow' || result === 'deny' || result === 'ignore' ? result : 'nomatch';
}
