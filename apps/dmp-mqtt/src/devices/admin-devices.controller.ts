import { DEVICE_ID_PATTERN, DeviceErrorCode } from '@dmp/contracts';
import { AdminExceptionFilter, AdminTokenGuard } from '@dmp/http';
import {
  BadRequestException,
  Body,
  ConflictException,
  Controller,
  Delete,
  Get,
  HttpCode,
  Inject,
  NotFoundException,
  Param,
  Patch,
  Post,
  UseFilters,
  UseGuards,
} from '@nestjs/common';
import { InjectPinoLogger, PinoLogger } from 'nestjs-pino';
import type { z } from 'zod';
import { MQTT_APP_CONFIG, type MqttAppConfig } from '../config';
import { isReservedDeviceId } from './acl';
import {
  registerDeviceSchema,
  toPublicDevice,
  updateDeviceSchema,
  type Device,
  type StoredDevice,
} from './device';
import { DeviceRegistry } from './device-registry.service';
import { generateSecret, hashSecret } from './device-secret';
import { DeviceRepository } from './device.repository';

export interface RegisteredDeviceResponse {
  device: Device;
  /** Only when the registry generated it: shown this once, stored only as a salted hash. */
  secret?: string;
}

/**
 * Device administration (Bearer ADMIN_TOKEN): register, show, change (e.g. disable), remove. Every
 * change is announced on `dmp:device-changed`, so all replicas see it within milliseconds.
 */
@Controller('admin/devices')
@UseGuards(AdminTokenGuard)
@UseFilters(AdminExceptionFilter)
export class AdminDevicesController {
  constructor(
    private readonly repository: DeviceRepository,
    private readonly registry: DeviceRegistry,
    @Inject(MQTT_APP_CONFIG) private readonly config: MqttAppConfig,
    @InjectPinoLogger(AdminDevicesController.name) private readonly logger: PinoLogger,
  ) {}

  @Post()
  @HttpCode(201)
  async register(@Body() body: unknown): Promise<RegisteredDeviceResponse> {
    const input = parse(registerDeviceSchema, body);
    if (isReservedDeviceId(this.config.edge.service, input.deviceId)) {
      // Such a device could never log in (the broker's own account database or the service account
      // answers for the name), or its client id would take a service connection's session over.
      throw new ConflictException({
        statusCode: 409,
        error: 'Conflict',
        code: DeviceErrorCode.ReservedDeviceId,
        message: `${input.deviceId} is reserved: a service account's name or client id`,
      });
    }
    const secret = input.secret ?? generateSecret();
    const now = new Date().toISOString();
    const device: StoredDevice = {
      deviceId: input.deviceId,
      status: input.status,
      tenantId: input.tenantId,
      productId: input.productId,
      siteId: input.siteId,
      tags: input.tags,
      createdAt: now,
      updatedAt: now,
      secretHash: await hashSecret(secret),
    };
    if (!(await this.repository.create(device))) {
      throw new ConflictException(`device ${input.deviceId} is already registered`);
    }
    this.registry.invalidate(device.deviceId);
    this.logger.info({ deviceId: device.deviceId, status: device.status }, 'device registered');
    return { device: toPublicDevice(device), ...(input.secret === undefined ? { secret } : {}) };
  }

  @Get(':id')
  async show(@Param('id') id: string): Promise<Device> {
    const device = await this.repository.get(validId(id));
    if (!device) throw new NotFoundException(`device ${id} is not registered`);
    return toPublicDevice(device);
  }

  @Patch(':id')
  async update(@Param('id') id: string, @Body() body: unknown): Promise<Device> {
    const change = parse(updateDeviceSchema, body);
    const device = await this.repository.update(validId(id), change);
    if (!device) throw new NotFoundException(`device ${id} is not registered`);
    this.registry.invalidate(id);
    this.logger.info({ deviceId: id, change }, 'device changed');
    return toPublicDevice(device);
  }

  @Delete(':id')
  @HttpCode(204)
  async remove(@Param('id') id: string): Promise<void> {
    if (!(await this.repository.remove(validId(id)))) {
      throw new NotFoundException(`device ${id} is not registered`);
    }
    this.registry.invalidate(id);
    this.logger.info({ deviceId: id }, 'device removed');
  }
}

function parse<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const result = schema.safeParse(body ?? {});
  if (result.success) return result.data;
  throw new BadRequestException({
    statusCode: 400,
    error: 'Bad Request',
    message: 'invalid request body',
    issues: result.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })),
  });
}

function validId(id: string): string {
  if (!DEVICE_ID_PATTERN.test(id)) throw new BadRequestException(`not a valid device id: ${id}`);
  return id;
}
