import { Logger, type LoggerService } from '@nestjs/common';
import { format } from 'node:util';
import type { ILogger } from 'rocketmq-client-nodejs';

/**
 * Routes the RocketMQ client's printf-style logging to a Nest logger (pino in the apps) instead
 * of its default file logger under the home folder. The client is chatty at `info` (start-up,
 * settings sync, route refresh), so that goes to `debug`; warnings and errors stay as they are.
 */
export function rocketMqClientLogger(logger: LoggerService = new Logger('RocketMQ')): ILogger {
  return {
    info: (...args: unknown[]) => {
      logger.debug?.(format(...args));
    },
    debug: (...args: unknown[]) => {
      logger.verbose?.(format(...args));
    },
    warn: (...args: unknown[]) => {
      logger.warn(format(...args));
    },
    error: (...args: unknown[]) => {
      logger.error(format(...args));
    },
  };
}
