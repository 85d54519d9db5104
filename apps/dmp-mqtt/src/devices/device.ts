import { DEVICE_ID_PATTERN, deviceStatuses, type DeviceStatus } from '@dmp/contracts';
import { z } from 'zod';

/** A registered device as the admin API shows it (never its secret or the secret's hash). */
export interface Device {
  deviceId: string;
  status: DeviceStatus;
  tenantId: string;
  productId: string;
  siteId: string;
  tags: Record<string, string>;
  createdAt: string;
  updatedAt: string;
}

/** What the registry stores: the device and its secret's salted hash. */
export interface StoredDevice extends Device {
  secretHash: string;
}

export const toPublicDevice = ({ secretHash: _secretHash, ...device }: StoredDevice): Device => device;

const metadataValue = z.string().max(128);
const TAG_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
export const MAX_TAGS = 32;
const tagsSchema = z
  .record(z.string().regex(TAG_NAME, 'tag names are 1–64 of A-Z a-z 0-9 _ . : -'), z.string().max(256))
  .refine((tags) => Object.keys(tags).length <= MAX_TAGS, `at most ${MAX_TAGS} tags`);

/** `POST /admin/devices`. Without `secret`, one is generated and returned once. */
export const registerDeviceSchema = z.strictObject({
  deviceId: z.string().regex(DEVICE_ID_PATTERN, 'device ids are 1–64 of A-Z a-z 0-9 _ . : -'),
  secret: z.string().min(16, 'secrets have at least 16 characters').max(256).optional(),
  status: z.enum(deviceStatuses).default('enabled'),
  tenantId: metadataValue.default(''),
  productId: metadataValue.default(''),
  siteId: metadataValue.default(''),
  tags: tagsSchema.default({}),
});
export type RegisterDevice = z.infer<typeof registerDeviceSchema>;

/** `PATCH /admin/devices/:id`: the fields to change (`status: 'disabled'` disables). */
export const updateDeviceSchema = z
  .strictObject({
    status: z.enum(deviceStatuses).optional(),
    tenantId: metadataValue.optional(),
    productId: metadataValue.optional(),
    siteId: metadataValue.optional(),
    tags: tagsSchema.optional(),
  })
  .refine((fields) => Object.values(fields).some((v) => v !== undefined), 'nothing to change');
export type UpdateDevice = z.infer<typeof updateDeviceSchema>;
