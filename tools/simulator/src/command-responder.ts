import { deviceCommandReplyTopic, type CommandReply } from '@dmp/contracts';
import { createHash } from 'node:crypto';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';

/** How a simulated device answers commands: at once ok, at once with an error, late, or never. */
export type ReplyBehaviour = 'ok' | 'error' | 'late' | 'never';

export interface ResponderOptions {
  /** Shares of devices that answer with an error, late, or never (the rest answer ok at once). */
  errorRatio: number;
  lateRatio: number;
  neverRatio: number;
  /** How long a late device takes to answer. */
  lateMs: number;
}

export const DEFAULT_RESPONDER: ResponderOptions = {
  errorRatio: 0.05,
  lateRatio: 0.05,
  neverRatio: 0.02,
  lateMs: 60_000,
};

/** A device's behaviour, fixed by its id (the same device always behaves the same): a hash into the ratios. */
export function behaviourOf(deviceId: string, options: ResponderOptions): ReplyBehaviour {
  const x = createHash('sha1').update(deviceId).digest().readUInt32BE(0) / 0x1_0000_0000;
  if (x < options.neverRatio) return 'never';
  if (x < options.neverRatio + options.errorRatio) return 'error';
  if (x < options.neverRatio + options.errorRatio + options.lateRatio) return 'late';
  return 'ok';
}

/** What a device does with a command it receives (pure): answer now, later, or not at all. */
export type ResponderAction =
  | { kind: 'reply'; delayMs: number; reply: CommandReply }
  /** A command id it executed already (a resend): the same answer again, not executed twice. */
  | { kind: 'repeat'; reply: CommandReply }
  | { kind: 'ignore'; reason: 'never answers' | 'stale' | 'already answering' | 'not a command' };

export function respond(
  behaviour: ReplyBehaviour,
  command: { commandId?: unknown; name?: unknown; expiresAt?: unknown },
  answered: ReadonlyMap<string, CommandReply | 'pending'>,
  options: ResponderOptions,
  now: number,
): ResponderAction {
  if (typeof command.commandId !== 'string') return { kind: 'ignore', reason: 'not a command' };
  const previous = answered.get(command.commandId);
  if (previous === 'pending') return { kind: 'ignore', reason: 'already answering' };
  if (previous) return { kind: 'repeat', reply: previous };
  if (behaviour === 'never') return { kind: 'ignore', reason: 'never answers' };
  // What an MQTT 3.1.1 device must do itself (MQTT 5 brokers drop expired commands already).
  if (typeof command.expiresAt === 'number' && command.expiresAt < now)
    return { kind: 'ignore', reason: 'stale' };
  const name = typeof command.name === 'string' ? command.name : '';
  if (behaviour === 'error')
    return {
      kind: 'reply',
      delayMs: 0,
      reply: { status: 'error', code: 'E_SIMULATED', message: `${name} failed (simulated)` },
    };
  return {
    kind: 'reply',
    delayMs: behaviour === 'late' ? options.lateMs : 0,
    reply: { status: 'ok', result: { applied: name } },
  };
}

/**
 * The fleet's command side: one MQTT 5 connection subscribed to `devices/+/command`, answering for the
 * devices whose id `owns` accepts on `devices/{id}/command/reply` — echoing the command's correlation
 * data and traceparent, deduplicating by command id (a resent command is answered again, never
 * executed twice).
 */
export class CommandResponder {
  readonly stats = { received: 0, executed: 0, repeated: 0, ignored: 0, replied: 0 };
  private client?: MqttClient;
  private readonly answered = new Map<string, CommandReply | 'pending'>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly options: ResponderOptions & {
      url: string;
      clientId: string;
      username?: string;
      password?: string;
      owns: (deviceId: string) => boolean;
      /** Overrides the hash (tests pick each device's behaviour). */
      behaviour?: (deviceId: string) => ReplyBehaviour;
    },
  ) {}

  async start(): Promise<void> {
    const client = await mqtt.connectAsync(this.options.url, {
      protocolVersion: 5,
      clientId: this.options.clientId,
      clean: true,
      username: this.options.username,
      password: this.options.password,
      reconnectPeriod: 1_000,
    });
    this.client = client;
    client.on('error', () => undefined);
    client.on('message', (topic, payload, packet) => this.receive(topic, payload, packet));
    await client.subscribeAsync('devices/+/command', { qos: 1 });
  }

  async stop(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    await this.client?.endAsync().catch(() => undefined);
  }

  behaviourOf(deviceId: string): ReplyBehaviour {
    return this.options.behaviour?.(deviceId) ?? behaviourOf(deviceId, this.options);
  }

  private receive(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const deviceId = topic.split('/')[1] ?? '';
    if (!this.options.owns(deviceId)) return;
    this.stats.received++;
    let command: { commandId?: unknown; name?: unknown; expiresAt?: unknown } = {};
    try {
      command = JSON.parse(payload.toString('utf8')) as typeof command;
    } catch {
      // not a command: ignored below
    }
    const action = respond(this.behaviourOf(deviceId), command, this.answered, this.options, Date.now());
    if (action.kind === 'ignore') {
      this.stats.ignored++;
      return;
    }
    const commandId = command.commandId as string;
    const send = (reply: CommandReply) => {
      this.stats.replied++;
      const traceparent = packet.properties?.userProperties?.traceparent;
      void this.client
        ?.publishAsync(
          packet.properties?.responseTopic ?? deviceCommandReplyTopic(deviceId),
          JSON.stringify(reply),
          {
            qos: 1,
            properties: {
              ...(packet.properties?.correlationData
                ? { correlationData: packet.properties.correlationData }
                : {}),
              ...(typeof traceparent === 'string' ? { userProperties: { traceparent } } : {}),
            },
          },
        )
        .catch(() => undefined);
    };
    if (action.kind === 'repeat') {
      this.stats.repeated++;
      return send(action.reply);
    }
    this.stats.executed++;
    this.remember(commandId, 'pending');
    const answer = () => {
      this.remember(commandId, action.reply);
      send(action.reply);
    };
    if (action.delayMs === 0) return answer();
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      answer();
    }, action.delayMs);
    this.timers.add(timer);
  }

  /** Keeps the latest 10 000 command ids (enough for any resend within a run). */
  private remember(commandId: string, value: CommandReply | 'pending'): void {
    this.answered.delete(commandId);
    this.answered.set(commandId, value);
    if (this.answered.size > 10_000) this.answered.delete(this.answered.keys().next().value!);
  }
}
