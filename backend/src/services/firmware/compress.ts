/**
 * The "tgz" of the reference (pepeunit-backend.md §7.5, quirk 14): the tar compressed with
 * Python's `zlib.compressobj(wbits, level)`, i.e. NOT necessarily gzip:
 *  - wbits -15…-9  → raw deflate with a 2^|wbits| window (`zlib.createDeflateRaw`);
 *  - wbits   9…15  → zlib-wrapped deflate with a 2^wbits window (`zlib.createDeflate`);
 *  - wbits  25…31  → gzip framing with a 2^(wbits-16) window (`zlib.createGzip`).
 * Devices decompress with the same wbits (MicroPython `deflate.DeflateIO(f, AUTO, 9)` for the
 * default wbits=9), so the window size matters: a larger window would not decompress there.
 */
import { constants, createDeflate, createDeflateRaw, createGzip, type Deflate, type DeflateRaw, type Gzip } from 'node:zlib';
import { UnitError } from '../../errors.js';

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Python `list(chain(range(-15, -8), range(9, 16), range(25, 32)))`. */
export const VALID_WBITS: readonly number[] = [...range(-15, -9), ...range(9, 15), ...range(25, 31)];
/** Python `list(range(-1, 10))`. */
export const VALID_LEVELS: readonly number[] = range(-1, 9);

const pythonList = (values: readonly number[]): string => `[${values.join(', ')}]`;

/** Reference validation and messages: UnitError 422 "Wbits 35 is not valid, available [...]". */
export function assertTgzParameters(wbits: number, level: number): void {
  if (!VALID_WBITS.includes(wbits)) throw new UnitError(`Wbits ${wbits} is not valid, available ${pythonList(VALID_WBITS)}`);
  if (!VALID_LEVELS.includes(level)) throw new UnitError(`Level ${level} is not valid, available ${pythonList(VALID_LEVELS)}`);
}

/** A zlib transform equivalent to `zlib.compressobj(wbits=wbits, level=level)`. */
export function createTgzCompressor(wbits: number, level: number): Deflate | DeflateRaw | Gzip {
  assertTgzParameters(wbits, level);
  const options = { level: level === -1 ? constants.Z_DEFAULT_COMPRESSION : level, memLevel: 8 };
  if (wbits < 0) return createDeflateRaw({ ...options, windowBits: -wbits });
  if (wbits <= 15) return createDeflate({ ...options, windowBits: wbits });
  return createGzip({ ...options, windowBits: wbits - 16 });
}
