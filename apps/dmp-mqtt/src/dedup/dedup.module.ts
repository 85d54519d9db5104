import { Module } from '@nestjs/common';
import { DuplicateFilter } from './duplicate-filter.service';

/** Duplicate detection across replicas (Redis). */
@Module({ providers: [DuplicateFilter], exports: [DuplicateFilter] })
export class DedupModule {}
