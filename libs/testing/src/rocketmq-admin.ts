import { connect, type Socket } from 'node:net';
import { z } from 'zod';
import { loadConfig } from '@dmp/config';

/**
 * A test's own RocketMQ topics and consumer groups, created by the test itself (the broker has
 * autoCreateTopicEnable / autoCreateSubscriptionGroup off, as in production; gRPC clients never create
 * them). It speaks RocketMQ's remoting protocol — the one mqadmin and scripts/stack/rocketmq/StackAdmin.java
 * use — to the name server and to every master broker, on one connection each: a test file's whole list
 * takes milliseconds, where a JVM admin tool takes seconds to start. Creating is idempotent.
 *
 * The message type must be what the producers send: telemetry, alarms and commands go in message
 * groups (FIFO), dead letters do not (NORMAL) — as docker/rocketmq/topics.txt lists DMP's own.
 */
export type TopicType = 'NORMAL' | 'FIFO';
export interface RocketmqResources {
  /** Topic → its message type, or its type and queue count (default 8). */
  topics?: Record<string, TopicType | { type: TopicType; queues: number }>;
  /**
   * Consumer group → `orderly` (consumes a FIFO topic in order) or `concurrently`, or with the broker's
   * retry limit (default 16), which must not be below the consumer's own delivery limit.
   */
  groups?: Record<string, 'orderly' | 'concurrently' | { orderly: boolean; retryMaxTimes: number }>;
}

/** The chain's topics under a test's own names. */
export interface ChainTopics {
  event: string;
  snapshot: string;
  alarm: string;
  deadLetter: string;
}

/** The chain's topics with the message type each carries (as docker/rocketmq/topics.txt has DMP's own). */
export function chainTopicTypes(topics: ChainTopics): Record<string, TopicType> {
  return {
    [topics.event]: 'FIFO',
    [topics.snapshot]: 'FIFO',
    [topics.alarm]: 'FIFO',
    [topics.deadLetter]: 'NORMAL',
  };
}

/** The name server of the stack the tests use (the apps reach RocketMQ through its proxy instead). */
const nameServerSection = z
  .object({ ROCKETMQ_NAMESRV_ADDR: z.string().default('127.0.0.1:9876') })
  .transform((e) => e.ROCKETMQ_NAMESRV_ADDR);
export const rocketmqNameServer = loadConfig({ nameServer: nameServerSection }).nameServer;

/** Request codes of RocketMQ's remoting protocol (org.apache.rocketmq.remoting.protocol.RequestCode). */
const Code = {
  updateAndCreateTopic: 17,
  putKvConfig: 100,
  getRouteInfoByTopic: 105,
  getBrokerClusterInfo: 106,
  updateAndCreateSubscriptionGroup: 200,
  getTopicConfig: 351,
} as const;
const SUCCESS = 0;
const PERM_READ_WRITE = 6;
const DEFAULT_QUEUES = 8;

interface Response {
  code: number;
  remark?: string;
  body: Buffer;
}

/** One remoting connection: JSON-serialized headers, requests matched to responses by `opaque`. */
class RemotingConnection {
  private buffered = Buffer.alloc(0);
  private opaque = 0;
  private readonly pending = new Map<
    number,
    { resolve: (r: Response) => void; reject: (e: Error) => void }
  >();

  private constructor(
    private readonly socket: Socket,
    readonly address: string,
  ) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (error) => this.failAll(error));
    socket.on('close', () => this.failAll(new Error(`${address}: connection closed`)));
  }

  static open(address: string, timeoutMs: number): Promise<RemotingConnection> {
    const [host, port] = [
      address.slice(0, address.lastIndexOf(':')),
      address.slice(address.lastIndexOf(':') + 1),
    ];
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port: Number(port), timeout: timeoutMs });
      socket.once('connect', () => {
        socket.setTimeout(0);
        resolve(new RemotingConnection(socket, address));
      });
      socket.once('timeout', () =>
        socket.destroy(new Error(`${address}: no connection within ${timeoutMs} ms`)),
      );
      socket.once('error', (error) => reject(new Error(`RocketMQ admin: ${address}: ${error.message}`)));
    });
  }

  request(code: number, extFields: Record<string, string> = {}, body?: unknown): Promise<Response> {
    const opaque = ++this.opaque;
    const header = Buffer.from(
      JSON.stringify({
        code,
        language: 'JAVA',
        version: 0,
        opaque,
        flag: 0,
        extFields,
        serializeTypeCurrentRPC: 'JSON',
      }),
    );
    const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(body));
    const frame = Buffer.alloc(8);
    frame.writeInt32BE(4 + header.length + payload.length, 0);
    frame.writeInt32BE(header.length, 4); // high byte 0: JSON serialization
    return new Promise((resolve, reject) => {
      this.pending.set(opaque, { resolve, reject });
      this.socket.write(Buffer.concat([frame, header, payload]));
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    while (this.buffered.length >= 4) {
      const length = this.buffered.readInt32BE(0);
      if (this.buffered.length < 4 + length) return;
      const frame = this.buffered.subarray(4, 4 + length);
      this.buffered = this.buffered.subarray(4 + length);
      const mark = frame.readInt32BE(0);
      const headerLength = mark & 0xffffff;
      if (mark >>> 24 !== 0) {
        this.failAll(new Error(`${this.address}: answered in a serialization other than JSON`));
        return;
      }
      const header = JSON.parse(frame.subarray(4, 4 + headerLength).toString('utf8')) as {
        code: number;
        opaque: number;
        remark?: string;
      };
      const waiting = this.pending.get(header.opaque);
      this.pending.delete(header.opaque);
      waiting?.resolve({ code: header.code, remark: header.remark, body: frame.subarray(4 + headerLength) });
    }
  }

  private failAll(error: Error): void {
    for (const { reject } of this.pending.values()) reject(error);
    this.pending.clear();
  }
}

/** RocketMQ's JSON (fastjson) writes maps with number keys unquoted: `{0:"127.0.0.1:10911"}`. */
function parseFastjson<T>(body: Buffer): T {
  return JSON.parse(body.toString('utf8').replace(/([{,])(-?\d+):/g, '$1"$2":')) as T;
}

function expectSuccess(response: Response, what: string): Response {
  if (response.code !== SUCCESS)
    throw new Error(
      `RocketMQ admin: ${what}: code ${response.code}${response.remark ? `, ${response.remark}` : ''}`,
    );
  return response;
}

interface ClusterInfo {
  brokerAddrTable: Record<string, { brokerName: string; brokerAddrs: Record<string, string> }>;
  clusterAddrTable: Record<string, string[]>;
}

/**
 * Creates (or updates) the topics and consumer groups on every master broker the name server knows, then
 * waits until the name server routes each topic (a client started right after must find it).
 */
export async function createRocketmqResources(
  resources: RocketmqResources,
  { nameServer = rocketmqNameServer, timeoutMs = 10_000 } = {},
): Promise<void> {
  const connections: RemotingConnection[] = [];
  const open = async (address: string) => {
    const connection = await RemotingConnection.open(address, timeoutMs);
    connections.push(connection);
    return connection;
  };
  const deadline = setTimeout(() => {
    for (const c of connections) c.close();
  }, timeoutMs);
  try {
    const namesrv = await open(nameServer);
    const cluster = parseFastjson<ClusterInfo>(
      expectSuccess(await namesrv.request(Code.getBrokerClusterInfo), 'cluster info').body,
    );
    const masters = Object.values(cluster.brokerAddrTable)
      .filter((broker) => broker.brokerAddrs['0'])
      .map((broker) => ({ name: broker.brokerName, address: broker.brokerAddrs['0'] }));
    if (masters.length === 0) throw new Error(`RocketMQ admin: no master broker registered at ${nameServer}`);
    const topics = Object.entries(resources.topics ?? {}).map(([name, spec]) =>
      typeof spec === 'string' ? { name, type: spec, queues: DEFAULT_QUEUES } : { name, ...spec },
    );
    const groups = Object.entries(resources.groups ?? {}).map(([name, spec]) =>
      typeof spec === 'string' ? { name, orderly: spec === 'orderly' } : { name, ...spec },
    );

    await Promise.all(
      masters.map(async (master) => {
        const broker = await open(master.address);
        await Promise.all([
          ...topics.map(async ({ name, type, queues }) => {
            expectSuccess(
              await broker.request(Code.updateAndCreateTopic, {
                topic: name,
                defaultTopic: 'TBW102',
                readQueueNums: String(queues),
                writeQueueNums: String(queues),
                perm: String(PERM_READ_WRITE),
                topicFilterType: 'SINGLE_TAG',
                topicSysFlag: '0',
                order: String(type === 'FIFO'),
                attributes: `+message.type=${type}`,
              }),
              `topic ${name} on ${master.name}`,
            );
            // Read back: a topic that existed with another message type must not pass unnoticed.
            const stored = parseFastjson<{ attributes?: Record<string, string> }>(
              expectSuccess(await broker.request(Code.getTopicConfig, { topic: name }), `topic ${name}`).body,
            );
            if (stored.attributes?.['message.type'] !== type)
              throw new Error(
                `RocketMQ admin: topic ${name} on ${master.name} has message.type=${stored.attributes?.['message.type']}, wanted ${type}`,
              );
          }),
          ...groups.map(async ({ name, orderly, ...rest }) =>
            expectSuccess(
              await broker.request(
                Code.updateAndCreateSubscriptionGroup,
                {},
                {
                  groupName: name,
                  consumeEnable: true,
                  consumeFromMinEnable: true,
                  consumeBroadcastEnable: true,
                  consumeMessageOrderly: orderly,
                  retryQueueNums: 1,
                  retryMaxTimes: 'retryMaxTimes' in rest ? rest.retryMaxTimes : 16,
                  brokerId: 0,
                  whichBrokerWhenConsumeSlowly: 1,
                  notifyConsumerIdsChangedEnable: true,
                },
              ),
              `group ${name} on ${master.name}`,
            ),
          ),
        ]);
      }),
    );
    // FIFO topics: their order configuration on the name server, as mqadmin updateOrderConf sets it.
    await Promise.all(
      topics
        .filter((t) => t.type === 'FIFO')
        .map(async ({ name, queues }) =>
          expectSuccess(
            await namesrv.request(Code.putKvConfig, {
              namespace: 'ORDER_TOPIC_CONFIG',
              key: name,
              value: masters.map((m) => `${m.name}:${queues}`).join(';'),
            }),
            `order configuration of ${name}`,
          ),
        ),
    );
    // Brokers register a new topic with the name server asynchronously.
    const routedBy = Date.now() + timeoutMs;
    for (const { name } of topics)
      for (;;) {
        if (Date.now() > routedBy) throw new Error(`RocketMQ admin: ${nameServer} does not route ${name}`);
        const route = await namesrv.request(Code.getRouteInfoByTopic, { topic: name });
        if (route.code === SUCCESS) {
          const routed =
            parseFastjson<{ queueDatas?: { brokerName: string }[] }>(route.body).queueDatas ?? [];
          if (masters.every((m) => routed.some((q) => q.brokerName === m.name))) break;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
  } finally {
    clearTimeout(deadline);
    for (const c of connections) c.close();
  }
}
