import { Module } from '@nestjs/common';
import { Normalizer } from './normalizer';

@Module({ providers: [Normalizer], exports: [Normalizer] })
export class NormalizationModule {}
