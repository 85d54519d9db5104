import * as protoLoader from '@grpc/proto-loader';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import {
  TELEMETRY_LOADER_OPTIONS,
  type IngestOutcome,
  type IngestResult,
  type TelemetryMessage,
  type TelemetryRequest,
} from './ingest-rpc';
import { TELEMETRY_PROTO_PATH } from './proto';

const ROOT = resolve(__dirname, '../../../..');
const GENERATED = join(ROOT, 'libs/contracts/src/generated');
const GENERATOR = join(ROOT, 'node_modules/@grpc/proto-loader/build/bin/proto-loader-gen-types.js');

/** The arguments of package.json's `proto:types` script (after the command name). */
function generatorArgs(): string[] {
  const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };
  const words = scripts['proto:types'].split(/\s+/);
  return words.slice(words.indexOf('proto-loader-gen-types') + 1);
}

const filesUnder = (dir: string): string[] =>
  readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();

describe('the KernelIngest types', () => {
  it('are what the generator makes of telemetry.proto now (run `npm run proto:types` after changing it)', () => {
    const out = mkdtempSync(join(tmpdir(), 'dmp-proto-types-'));
    try {
      const args = generatorArgs().map((arg, i, all) => (all[i - 1] === '-O' ? out : arg));
      execFileSync(process.execPath, [GENERATOR, ...args], { cwd: ROOT, stdio: 'pipe' });
      const files = filesUnder(out);
      assert.deepEqual(filesUnder(GENERATED), files);
      for (const file of files)
        assert.equal(
          readFileSync(join(GENERATED, file), 'utf8'),
          readFileSync(join(out, file), 'utf8'),
          `${file} is stale: run npm run proto:types`,
        );
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('are generated with the loader options both sides use', () => {
    const flags = new Set(generatorArgs().filter((a) => a.startsWith('--')));
    assert.equal(TELEMETRY_LOADER_OPTIONS.keepCase, false);
    assert.ok(![...flags].some((f) => f.startsWith('--keepCase')));
    assert.equal(TELEMETRY_LOADER_OPTIONS.longs, Number);
    assert.ok(flags.has('--longs=Number'));
    assert.equal(TELEMETRY_LOADER_OPTIONS.enums, String);
    assert.ok(flags.has('--enums=String'));
    assert.equal(TELEMETRY_LOADER_OPTIONS.defaults, true);
    assert.ok(flags.has('--defaults'));
    assert.equal(TELEMETRY_LOADER_OPTIONS.oneofs, true);
    assert.ok(flags.has('--oneofs'));
  });

  it('describe what proto-loader hands a server and a client, field for field', () => {
    const definition = protoLoader.loadSync(TELEMETRY_PROTO_PATH, TELEMETRY_LOADER_OPTIONS);
    const ingest = (definition['dmp.telemetry.v1.KernelIngest'] as protoLoader.ServiceDefinition).Ingest;
    const sent: TelemetryRequest = {
      deviceId: 'dev-1',
      messageId: 'm-1',
      kind: 'KIND_EVENT',
      ts: 1_732_200_000_123,
      metrics: { temp: { number: 21.5 }, on: { flag: true }, mode: { text: 'eco' } },
      receivedAt: 1_732_200_000_456,
    };
    const received: TelemetryMessage = {
      deviceId: 'dev-1',
      messageId: 'm-1',
      kind: 'KIND_EVENT',
      ts: 1_732_200_000_123,
      seq: 0,
      metrics: {
        temp: { number: 21.5, value: 'number' },
        on: { flag: true, value: 'flag' },
        mode: { text: 'eco', value: 'text' },
      },
      receivedAt: 1_732_200_000_456,
      traceparent: '',
      tracestate: '',
    };
    const batch = ingest.requestDeserialize(ingest.requestSerialize({ messages: [sent] })) as unknown;
    assert.deepEqual(JSON.parse(JSON.stringify(batch)), { messages: [received] });

    const outcome: IngestOutcome = {
      messageId: 'm-1',
      accepted: false,
      errorCode: 'DMP_ERR_SHED_SNAPSHOT',
      errorMessage: 'later',
      retryable: true,
    };
    const answer: IngestResult = { outcomes: [outcome, { ...outcome, messageId: 'm-2', accepted: true }] };
    assert.deepEqual(
      JSON.parse(JSON.stringify(ingest.responseDeserialize(ingest.responseSerialize(answer)))),
      answer,
    );
  });
});
