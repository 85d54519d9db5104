import {
  FilterExpression,
  Producer,
  SimpleConsumer,
  SubscriptionLoadBalancer,
  type MessageView,
  type ProducerOptions,
  type SimpleConsumerOptions,
  type TopicRouteData,
} from 'rocketmq-client-nodejs';

/*
 * rocketmq-client-nodejs 1.0.8 start-up race: `startup()` fetches the route of every topic one
 * after the other, and the first route opens the telemetry stream on which the proxy answers with
 * the client settings; `startup()` only starts waiting for that answer after the last route. With
 * two or more topics the answer can come in between, is dropped, and `startup()` never resolves.
 * With one topic nothing can come in between. So the clients below start with their first topic
 * only and fetch the other routes right after (still failing start-up if a topic is missing).
 */

/** A Producer that starts reliably with several topics. */
export class StartupSafeProducer extends Producer {
  private readonly laterTopics: string[];

  constructor(options: Omit<ProducerOptions, 'topic'> & { topics: string[] }) {
    const [first, ...later] = options.topics;
    if (!first) throw new Error('a RocketMQ producer needs at least one topic');
    super({ ...options, topics: [first] });
    this.laterTopics = later;
  }

  override async startup(): Promise<void> {
    await super.startup();
    // getRouteData also adds the topic to the ones refreshed every 30 s.
    for (const topic of this.laterTopics) await this.getRouteData(topic);
  }
}

/**
 * A SimpleConsumer for several topics that starts reliably and can receive from a given topic.
 * `SimpleConsumer.receive()` takes the next topic round-robin on every call, so with one busy and
 * one idle topic every other call long-polls the idle topic for `awaitDuration`: the busy topic
 * gets a fraction of the throughput. `receiveFrom(topic)` lets each topic have its own loops.
 */
export class MultiTopicSimpleConsumer extends SimpleConsumer {
  private readonly laterSubscriptions: [string, FilterExpression][];
  private readonly filters = new Map<string, FilterExpression>();
  private readonly balancers = new Map<
    string,
    { route: TopicRouteData; balancer: SubscriptionLoadBalancer }
  >();
  private readonly longPollingMs: number;

  constructor(
    options: Omit<SimpleConsumerOptions, 'subscriptions'> & { subscriptions: Map<string, string> },
  ) {
    const [first, ...later] = options.subscriptions;
    if (!first) throw new Error('a RocketMQ consumer needs at least one topic');
    super({ ...options, subscriptions: new Map([first]) });
    for (const [topic, tag] of options.subscriptions) this.filters.set(topic, new FilterExpression(tag));
    this.laterSubscriptions = later.map(([topic]) => [topic, this.filters.get(topic)!]);
    this.longPollingMs = options.awaitDuration ?? 30_000;
  }

  override async startup(): Promise<void> {
    await super.startup();
    if (this.laterSubscriptions.length === 0) return;
    for (const [topic, filter] of this.laterSubscriptions) await this.subscribe(topic, filter);
    // Tell the proxy about the full subscription now rather than at the next 5-minute sync.
    const command = this.settingsCommand();
    for (const endpoints of this.getTotalRouteEndpoints()) this.telemetry(endpoints, command);
  }

  /** Like `receive()`, from `topic` (one of the subscriptions). At most 32 messages per call. */
  async receiveFrom(
    topic: string,
    maxMessageNum: number,
    invisibleDurationMs: number,
  ): Promise<MessageView[]> {
    const filter = this.filters.get(topic);
    if (!filter) throw new Error(`not subscribed to ${topic}`);
    const route = await this.getRouteData(topic);
    let cached = this.balancers.get(topic);
    if (cached?.route !== route) {
      cached = {
        route,
        balancer: cached ? cached.balancer.update(route) : new SubscriptionLoadBalancer(route),
      };
      this.balancers.set(topic, cached);
    }
    const queue = cached.balancer.takeMessageQueue();
    const request = this.wrapReceiveMessageRequest(
      maxMessageNum,
      queue,
      filter,
      invisibleDurationMs,
      this.longPollingMs,
    );
    return this.receiveMessage(request, queue, this.longPollingMs);
  }
}
