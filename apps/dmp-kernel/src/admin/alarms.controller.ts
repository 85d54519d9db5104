import { AdminExceptionFilter, AdminTokenGuard } from '@dmp/http';
import { ALARM_ID_PATTERN, DEVICE_ID_PATTERN, type AlarmEvent } from '@dmp/contracts';
import type { Activation } from '@dmp/rules';
import {
  BadRequestException,
  Body,
  Controller,
  Get,
  HttpCode,
  Param,
  Post,
  Query,
  UseFilters,
  UseGuards,
} from '@nestjs/common';
import { z } from 'zod';
import { AlarmService } from '../alarms/alarm.service';

const ackSchema = z.strictObject({ by: z.string().min(1).max(256).default('admin-api') });

/** Open alarms and their acknowledgement (Bearer ADMIN_TOKEN). */
@Controller('alarms')
@UseGuards(AdminTokenGuard)
@UseFilters(AdminExceptionFilter)
export class AlarmsController {
  constructor(private readonly alarms: AlarmService) {}

  /** `GET /alarms?deviceId=…`: the device's open alarms (pending, active, acknowledged). */
  @Get()
  async list(@Query('deviceId') deviceId?: string): Promise<{ alarms: Activation[] }> {
    if (!deviceId || !DEVICE_ID_PATTERN.test(deviceId)) throw new BadRequestException('deviceId is required');
    return { alarms: await this.alarms.listDevice(deviceId) };
  }

  /** `POST /alarms/:id/ack` `{ "by": "alice" }`: 200 with the acknowledged event; 404 unknown/closed; 409 not active. */
  @Post(':id/ack')
  @HttpCode(200)
  async ack(@Param('id') id: string, @Body() body: unknown): Promise<AlarmEvent> {
    if (!ALARM_ID_PATTERN.test(id)) throw new BadRequestException(`not an alarm id: ${id}`);
    const parsed = ackSchema.safeParse(body ?? {});
    if (!parsed.success) throw new BadRequestException('expected { "by": "<who>" }');
    return this.alarms.acknowledge(id, parsed.data.by);
  }
}
