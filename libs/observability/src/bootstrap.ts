import type { INestApplication } from '@nestjs/common';
import { Logger } from 'nestjs-pino';

export interface HttpListenOptions {
  host: string;
  port: number;
}

/**
 * The common tail of every app's start-up: pino as Nest's logger, shutdown hooks (SIGTERM drains
 * in-flight work through each feature's hooks), microservices started after the modules are
 * ready, then HTTP (`/health`, `/metrics`, and the app's own endpoints).
 */
export async function startApplication(
  app: INestApplication,
  http: HttpListenOptions,
  onMicroservicesStarted?: () => void,
): Promise<void> {
  app.useLogger(app.get(Logger));
  app.enableShutdownHooks();
  await app.init();
  await app.startAllMicroservices();
  onMicroservicesStarted?.();
  await app.listen(http.port, http.host);
  app.get(Logger).log(`listening on http://${http.host}:${http.port}`);
}
