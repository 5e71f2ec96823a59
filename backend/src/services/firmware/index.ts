export { IgnoreMatcher } from './pepeignore.js';
export { applyIgnoreRules, collectEntries, type ArchiveEntry } from './entries.js';
export { tarStream } from './tar.js';
export { zipStream } from './zip.js';
export { assertTgzParameters, createTgzCompressor, VALID_WBITS, VALID_LEVELS } from './compress.js';
export {
  buildFirmware,
  cleanupStaleBuilds,
  firmwareArchiveStream,
  firmwareArchiveFile,
  pythonIndentedJson,
  defaultWorkRoot,
  ARCHIVE_CONTENT_TYPES,
  PEPEIGNORE_FILE,
  type ArchiveFormat,
  type FirmwareBuild,
  type FirmwareArchiveFile,
  type FirmwareBuildInput,
  type TreeExporter,
} from './build.js';
