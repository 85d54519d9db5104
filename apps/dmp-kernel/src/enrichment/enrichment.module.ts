import { Module } from '@nestjs/common';
import { DeviceMetadataCache } from './device-metadata.cache';
import { DeviceMetadataRepository } from './device-metadata.repository';

/** Device metadata (tenant, product, site, tags) from the Redis registry, cached and invalidated on change. */
@Module({
  providers: [DeviceMetadataRepository, DeviceMetadataCache],
  exports: [DeviceMetadataCache],
})
export class EnrichmentModule {}
