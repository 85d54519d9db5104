import { Module } from '@nestjs/common';
import { AdminDevicesController } from './admin-devices.controller';
import { AdminTokenGuard } from './admin-token.guard';
import { DeviceRegistry } from './device-registry.service';
import { DeviceRepository } from './device.repository';

/** The device registry (Redis + cache) and its admin endpoints. */
@Module({
  controllers: [AdminDevicesController],
  providers: [DeviceRepository, DeviceRegistry, AdminTokenGuard],
  exports: [DeviceRegistry],
})
export class DevicesModule {}
