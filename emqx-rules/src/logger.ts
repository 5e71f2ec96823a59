/** The logger every function here accepts (common's LogSink); silent when omitted. */
export type { LogSink as Logger } from '@pepeunit/common';
export { silentSink as silentLogger } from '@pepeunit/common';
