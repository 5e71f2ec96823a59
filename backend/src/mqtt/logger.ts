/** The logger shape the MQTT consumers need (common's LogSink); silent by default. */
export type { LogSink as MinimalLogger } from '@pepeunit/common';
export { silentSink as silent } from '@pepeunit/common';
