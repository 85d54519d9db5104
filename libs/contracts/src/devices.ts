/**
 * The device registry in Redis, shared by dmp-mqtt (which writes it and authenticates devices with it)
 * and dmp-kernel (which reads the metadata fields to enrich telemetry).
 *
 * One hash per device, `dmp:device:{deviceId}`, with plain string fields (see {@link DeviceField}); `tags`
 * is a JSON object of strings. Every change is announced by publishing the device id on
 * {@link DEVICE_CHANGED_CHANNEL}, so caches in any process can drop their copy at once.
 */
export const DEVICE_KEY_PREFIX = 'dmp:device:';
export const deviceRegistryKey = (deviceId: string) => `${DEVICE_KEY_PREFIX}${deviceId}`;

/** Redis pub/sub channel; the message is the id of the device that was created, changed or removed. */
export const DEVICE_CHANGED_CHANNEL = 'dmp:device-changed';

export const DeviceField = {
  deviceId: 'deviceId',
  /** `enabled` | `disabled`. */
  status: 'status',
  /** Salted hash of the device's secret (`scrypt$N$r$p$salt$hash`, base64); never the secret itself. */
  secretHash: 'secretHash',
  tenantId: 'tenantId',
  productId: 'productId',
  siteId: 'siteId',
  /** JSON object of string values, e.g. `{"floor":"3"}`. */
  tags: 'tags',
  /** ISO 8601. */
  createdAt: 'createdAt',
  updatedAt: 'updatedAt',
} as const;

export const deviceStatuses = ['enabled', 'disabled'] as const;
export type DeviceStatus = (typeof deviceStatuses)[number];

/** The metadata fields dmp-kernel reads for enrichment, parsed. */
export interface DeviceMetadata {
  tenantId: string;
  productId: string;
  siteId: string;
  tags: Record<string, string>;
}

/** Metadata from a registry hash (HGETALL result); missing or malformed fields read as empty. */
export function deviceMetadataOf(hash: Readonly<Record<string, string>>): DeviceMetadata {
  return {
    tenantId: hash[DeviceField.tenantId] ?? '',
    productId: hash[DeviceField.productId] ?? '',
    siteId: hash[DeviceField.siteId] ?? '',
    tags: parseTags(hash[DeviceField.tags]),
  };
}

function parseTags(json: string | undefined): Record<string, string> {
  if (!json) return {};
  try {
    const value: unknown = JSON.parse(json);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return {};
    return Object.fromEntries(
      Object.entries(value).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
    );
  } catch {
    return {};
  }
}
