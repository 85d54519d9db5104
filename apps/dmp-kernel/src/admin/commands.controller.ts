import { AdminExceptionFilter, AdminTokenGuard } from '@dmp/http';
import {
  COMMAND_ID_PATTERN,
  CommandErrorCode,
  DEVICE_ID_PATTERN,
  DmpError,
  type CommandRecord,
} from '@dmp/contracts';
import {
  BadRequestException,
  Controller,
  Get,
  HttpCode,
  Param,
  Post,
  Query,
  UseFilters,
  UseGuards,
} from '@nestjs/common';
import { CommandService } from '../command-replies/command.service';

/** The command ledger (Bearer ADMIN_TOKEN): a device's commands, one command, a resend. */
@Controller('commands')
@UseGuards(AdminTokenGuard)
@UseFilters(AdminExceptionFilter)
export class CommandsController {
  constructor(private readonly commands: CommandService) {}

  /** `GET /commands?deviceId=…&limit=50`: the device's latest commands, newest first. */
  @Get()
  async list(
    @Query('deviceId') deviceId?: string,
    @Query('limit') limit?: string,
  ): Promise<{ commands: CommandRecord[] }> {
    if (!deviceId || !DEVICE_ID_PATTERN.test(deviceId)) throw new BadRequestException('deviceId is required');
    const n = limit === undefined ? 50 : Number(limit);
    if (!Number.isInteger(n) || n < 1 || n > 1_000)
      throw new BadRequestException('limit must be an integer from 1 to 1000');
    return { commands: await this.commands.listDevice(deviceId, n) };
  }

  /** `GET /commands/:id`: the command's record; 404 when unknown (or past KERNEL_COMMAND_RETENTION_MS). */
  @Get(':id')
  async get(@Param('id') id: string): Promise<CommandRecord> {
    if (!COMMAND_ID_PATTERN.test(id)) throw new BadRequestException(`not a command id: ${id}`);
    const record = await this.commands.get(id);
    if (!record) throw new DmpError(CommandErrorCode.NotFound, `no command ${id}`, false);
    return record;
  }

  /** `POST /commands/:id/resend`: 200 with the record (queued again, same id); 404 unknown; 409 not resendable. */
  @Post(':id/resend')
  @HttpCode(200)
  async resend(@Param('id') id: string): Promise<CommandRecord> {
    if (!COMMAND_ID_PATTERN.test(id)) throw new BadRequestException(`not a command id: ${id}`);
    return this.commands.resend(id);
  }
}
