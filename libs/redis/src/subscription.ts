import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';

export interface SubscriptionHandlers {
  onMessage(message: string): void;
  onSubscribed(restored: boolean): void;
}

/**
 * A subscription to one pub/sub channel, on a connection of its own (a subscribed connection takes no
 * other commands). Started on module init and stopped on shutdown by its owner; a Redis that is not there
 * at start-up is subscribed to once it is. `onSubscribed(restored)` says when messages flow: `restored`
 * is false only for the subscription made at start-up — any later one follows a time without it, when
 * messages may have been missed (ioredis subscribes again by itself after a reconnect).
 */
export class ChannelSubscription {
  private readonly connection: Redis;
  private readonly log: Logger;
  private subscribed = false;
  private starting = true;

  constructor(
    redis: Redis,
    private readonly channel: string,
    private readonly handlers: SubscriptionHandlers,
    logContext: string,
  ) {
    this.connection = redis.duplicate({ lazyConnect: true, maxRetriesPerRequest: null });
    this.log = new Logger(logContext);
  }

  async start(): Promise<void> {
    this.connection.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.handlers.onMessage(message);
    });
    this.connection.on('ready', () => {
      if (this.starting) return; // start() subscribes
      if (!this.subscribed) void this.subscribe();
      else this.handlers.onSubscribed(true);
    });
    this.connection.on('error', () => undefined); // the command connection logs Redis errors
    try {
      await this.connection.connect();
    } catch (error) {
      // ioredis keeps reconnecting; 'ready' subscribes then.
      this.log.warn(`not subscribed to ${this.channel} yet: ${(error as Error).message}`);
      return;
    } finally {
      this.starting = false;
    }
    await this.subscribe(false);
  }

  async stop(): Promise<void> {
    await this.connection.quit().catch(() => this.connection.disconnect());
  }

  private async subscribe(restored = true): Promise<void> {
    try {
      await this.connection.subscribe(this.channel);
      this.subscribed = true;
      this.handlers.onSubscribed(restored);
    } catch (error) {
      this.log.warn(
        `subscribing to ${this.channel} failed (retried on reconnect): ${(error as Error).message}`,
      );
    }
  }
}
