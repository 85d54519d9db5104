import { Module } from '@nestjs/common';
import { DeadLetterPublisher } from './dead-letter.publisher';

/** The dead-letter destination of refused device messages (RocketMQ `dmp_dead_letter`). */
@Module({ providers: [DeadLetterPublisher], exports: [DeadLetterPublisher] })
export class DeadLetterModule {}
