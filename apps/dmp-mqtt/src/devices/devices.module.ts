import { adminApiAuthProvider, AdminTokenGuard } from '@dmp/http';
import { Module } from '@nestjs/common';
import { MQTT_APP_CONFIG, type MqttAppConfig } from '../config';
import { AdminDevicesController } from './admin-devices.controller';
import { DeviceRegistry } from './device-registry.service';
import { DeviceRepository } from './device.repository';

/** The device registry (Redis + cache) and its admin endpoints. */
@Module({
  controllers: [AdminDevicesController],
  providers: [
    DeviceRepository,
    DeviceRegistry,
    adminApiAuthProvider<MqttAppConfig>(MQTT_APP_CONFIG, (config) => config.edge.adminToken),
    AdminTokenGuard,
  ],
  exports: [DeviceRegistry],
})
export class DevicesModule {}
