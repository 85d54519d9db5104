import { Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { DevicesModule } from '../devices/devices.module';
import { AuthRequestErrorFilter } from './auth-request.filter';
import { MqttAuthController } from './mqtt-auth.controller';
import { MqttAuthService } from './mqtt-auth.service';

/** EMQX's HTTP authentication and authorization endpoints. */
@Module({
  imports: [DevicesModule],
  controllers: [MqttAuthController],
  providers: [MqttAuthService, { provide: APP_FILTER, useClass: AuthRequestErrorFilter }],
})
export class AuthModule {}
