import type { NormalizedTelemetry } from '@dmp/contracts';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadRuleSet, Replay } from './rules';

describe('dmp rules', () => {
  it('reports errors as dir/file:line:col: message', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dmp-rules-cli-'));
    try {
      await writeFile(
        join(dir, 'a.yaml'),
        'rules:\n  - id: x\n    when: msg.kind ==\n    actions: [{ route: { topic: t } }]\n',
      );
      const { ruleSet, errors } = await loadRuleSet(dir);
      assert.equal(ruleSet, undefined);
      assert.deepEqual(errors, [`${dir}/a.yaml:3:22: when: CEL: Unexpected token: EOF`]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('replays messages in memory and, at the end of a range, raises what was held long enough', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dmp-rules-cli-'));
    try {
      await writeFile(
        join(dir, 'a.yaml'),
        'rules:\n  - id: hot\n    when: state.latest.t > 30.0\n    for: 10s\n    actions: [{ alarm: { severity: major } }]\n',
      );
      const { ruleSet } = await loadRuleSet(dir);
      assert.ok(ruleSet);
      const replay = new Replay(ruleSet, 'bt');
      const device = { deviceId: 'd', tenantId: '', productId: '', siteId: '', tags: {} };
      const message = (ts: number, t: number): NormalizedTelemetry => ({
        deviceId: 'd',
        messageId: `m${ts}`,
        kind: 'telemetry',
        ts,
        metrics: { t },
        receivedAt: ts,
        tenantId: '',
        productId: '',
        siteId: '',
      });
      assert.deepEqual(
        replay.evaluate(message(1_000, 31), device).transitions.map((t) => t.transition),
        ['pending'],
      );
      assert.deepEqual(replay.finish(device, 5_000).transitions, [], 'not held long enough by the end');
      const end = replay.finish(device, 60_000).transitions;
      assert.deepEqual(
        end.map((t) => [t.transition, t.ts, t.event?.alarmId]),
        [['raised', 11_000, 'bt-1']],
      );
      assert.equal(replay.open('d')[0]?.state, 'active');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
