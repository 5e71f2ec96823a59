/**
 * Transformations (§3.4). Number: multiply (Go `%f`, 6 decimals) then round (Go `%.Nf`,
 * half to even on exact ties); a value that does not parse is passed through unchanged.
 * Text: Python-style slice over the UTF-8 bytes, as Go slices bytes. Where a bound would cut
 * a multi-byte character, the partial character is left out (Go keeps the broken bytes,
 * which Postgres then refuses); for ASCII text the result is byte-identical to Go's.
 */
import type { TransformationsConfig, TypeInputValue } from '@pepeunit/common/datapipe/index';
import { formatGoF, formatGoFixed, parseGoFloat } from './go-number.js';

export interface CompiledTransformations {
  multiplicationRatio: number | null;
  roundDecimalPoint: number | null;
  sliceStart: number | null;
  sliceEnd: number | null;
}

export function compileTransformations(config: TransformationsConfig | null): CompiledTransformations | null {
  if (config === null) return null;
  return {
    multiplicationRatio: config.multiplication_ratio,
    roundDecimalPoint: config.round_decimal_point,
    sliceStart: config.slice_start,
    sliceEnd: config.slice_end,
  };
}

/** Python slice bounds clamped to [0, length] (Go transformations.go rules). */
export function sliceBounds(length: number, start: number | null, end: number | null): [number, number] {
  let s = 0;
  let e = length;
  if (start !== null) {
    s = start < 0 ? length + start : start;
    s = Math.min(Math.max(s, 0), length);
  }
  if (end !== null) {
    e = end < 0 ? length + end : end;
    e = Math.min(Math.max(e, 0), length);
  }
  return s < e ? [s, e] : [0, 0];
}

const isContinuationByte = (b: number | undefined): boolean => b !== undefined && (b & 0xc0) === 0x80;

/** Byte slice of UTF-8 text, leaving out characters cut by either bound. */
export function sliceUtf8Bytes(value: string, start: number | null, end: number | null): string {
  const byteLength = Buffer.byteLength(value, 'utf8');
  if (byteLength === value.length) {
    const [s, e] = sliceBounds(value.length, start, end);
    return value.slice(s, e);
  }
  const bytes = Buffer.from(value, 'utf8');
  let [s, e] = sliceBounds(bytes.length, start, end);
  if (s >= e) return '';
  // A start inside a character skips the rest of that character.
  while (s < e && isContinuationByte(bytes[s])) s++;
  // An end inside a character drops that character.
  if (e < bytes.length && isContinuationByte(bytes[e])) {
    while (e > s && isContinuationByte(bytes[e])) e--;
  }
  return s < e ? bytes.toString('utf8', s, e) : '';
}

export function applyTransformations(t: CompiledTransformations | null, inputType: TypeInputValue, value: string): string {
  if (t === null) return value;
  if (inputType === 'Number') {
    let out = value;
    if (t.multiplicationRatio !== null) {
      const n = parseGoFloat(out);
      if (n === null) return out;
      out = formatGoF(n * t.multiplicationRatio);
    }
    if (t.roundDecimalPoint !== null) {
      const n = parseGoFloat(out);
      if (n === null) return out;
      out = formatGoFixed(n, t.roundDecimalPoint);
    }
    return out;
  }
  if (t.sliceStart !== null || t.sliceEnd !== null) return sliceUtf8Bytes(value, t.sliceStart, t.sliceEnd);
  return value;
}
