export { IgnoreMatcher, boundedIgnoreLines } from './pepeignore.js';
export { applyIgnoreRules, collectEntries, type ArchiveEntry } from './entries.js';
export { tarStream, tarEntryName, tarHeaders } from './tar.js';
export { zipStream, zipEntryName } from './zip.js';
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
