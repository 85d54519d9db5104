import {
  COMMAND_ID_PATTERN,
  commandReplySchema,
  parseCommandReplyTopic,
  type CommandReply,
} from '@dmp/contracts';

export type ParsedReply =
  | { ok: true; deviceId: string; commandId: string; reply: CommandReply }
  | { ok: false; deviceId?: string; problem: string };

/**
 * A device's reply, read: the device from the topic (`devices/{id}/command/reply`), the command id from
 * the MQTT 5 correlation data (the command's, echoed) or else the payload's `commandId` (MQTT 3.1.1),
 * and `{ status: ok | error, code?, message?, result? }` from the JSON payload. Every way it can be
 * wrong is a `problem` the kernel reports (DMP_ERR_INVALID_COMMAND_REPLY); nothing is thrown.
 */
export function parseCommandReply(topic: string, payload: Buffer, correlationData?: Buffer): ParsedReply {
  const deviceId = parseCommandReplyTopic(topic);
  if (!deviceId) return { ok: false, problem: `not a reply topic: ${topic}` };
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, deviceId, problem: 'the payload is not JSON' };
  }
  const parsed = commandReplySchema.safeParse(json);
  if (!parsed.success)
    return {
      ok: false,
      deviceId,
      problem: `not a command reply: ${parsed.error.issues
        .slice(0, 3)
        .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
        .join('; ')}`,
    };
  const correlated = correlationData?.length ? correlationData.toString('utf8') : undefined;
  const commandId = correlated ?? parsed.data.commandId;
  if (!commandId) return { ok: false, deviceId, problem: 'no command id (correlation data or `commandId`)' };
  if (!COMMAND_ID_PATTERN.test(commandId))
    return { ok: false, deviceId, problem: 'the correlation data is not a command id' };
  return { ok: true, deviceId, commandId, reply: parsed.data };
}
