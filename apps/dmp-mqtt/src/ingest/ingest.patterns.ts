/** Nest message pattern under which the MQTT transport dispatches device messages. */
export const DEVICE_MESSAGE = 'device.message';
