import { ConfigError } from '@dmp/config';
import { startTelemetry } from '@dmp/observability';
import { loadKernelConfig } from './config';

async function main(): Promise<void> {
  const config = loadKernelConfig();
  const telemetry = startTelemetry({ serviceName: 'dmp-kernel', ...config.telemetry });
  const { bootstrap } = await import('./bootstrap.js'); // Nest + instrumented libraries load after OTel
  await bootstrap(config, telemetry);
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
});
