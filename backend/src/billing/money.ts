/**
 * Exact money arithmetic: amounts are decimal strings in the plan currency, computed as BigInt
 * counts of 10^-9 units ("nano"), the scale of the ledger's numeric(38, 9) columns. Never floats.
 */
export const SCALE = 9;
const FACTOR = 10n ** BigInt(SCALE);
const DECIMAL = /^-?\d{1,29}(\.\d{1,9})?$/;

export function isDecimal(text: string): boolean {
  return DECIMAL.test(text);
}

/** Parses a decimal string (at most 9 fraction digits) into nano units. */
export function toNano(text: string | number): bigint {
  const s = typeof text === 'number' ? text.toString() : text.trim();
  if (!DECIMAL.test(s)) throw new RangeError(`not a decimal amount with at most ${SCALE} fraction digits: ${JSON.stringify(s)}`);
  const negative = s.startsWith('-');
  const [whole, fraction = ''] = (negative ? s.slice(1) : s).split('.');
  const value = BigInt(whole!) * FACTOR + BigInt((fraction + '0'.repeat(SCALE)).slice(0, SCALE));
  return negative ? -value : value;
}

/** Nano units to the shortest decimal string (`12.5`, `0`, `-0.000000001`). */
export function fromNano(value: bigint): string {
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const whole = abs / FACTOR;
  const fraction = (abs % FACTOR).toString().padStart(SCALE, '0').replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`;
}

/** a × b for two nano amounts, rounded towards zero (in the user's favour for charges). */
export function mulNano(a: bigint, b: bigint): bigint {
  return (a * b) / FACTOR;
}

/** numerator / denominator as a nano amount, rounded towards zero. */
export function ratioNano(numerator: bigint, denominator: bigint): bigint {
  if (denominator === 0n) throw new RangeError('division by zero');
  return (numerator * FACTOR) / denominator;
}

export function maxNano(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
