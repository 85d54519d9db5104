import { Module } from '@nestjs/common';
import { DedupRepository } from './dedup.repository';
import { DuplicateFilter } from './duplicate-filter.service';

/** Duplicate detection across replicas (Redis). */
@Module({ providers: [DedupRepository, DuplicateFilter], exports: [DuplicateFilter] })
export class DedupModule {}
