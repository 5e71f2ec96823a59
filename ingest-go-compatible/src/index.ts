export { startIngest } from './service.js';
export type { IngestService } from './service.js';
