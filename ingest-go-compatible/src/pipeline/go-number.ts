/**
 * Go's number handling as the reference DataPipe uses it (§3.4, §3.10), byte for byte:
 * `strconv.ParseFloat(s, 64)`, `fmt.Sprintf("%f", v)` and `fmt.Sprintf("%.*f", n, v)`.
 * Ground truth: shared/vectors/go-datapipe-numbers.json.
 */

const DECIMAL_DIGIT = /[0-9]/;
const HEX_DIGIT = /[0-9a-fA-F]/;

/** Go `strconv.underscoreOK`: underscores only between digits (or after a base prefix). */
function underscoreOK(s: string): boolean {
  let saw = '^';
  let i = 0;
  if (s[0] === '-' || s[0] === '+') s = s.slice(1);
  let hex = false;
  if (s.length >= 2 && s[0] === '0' && 'bBoOxX'.includes(s[1] as string)) {
    i = 2;
    saw = '0';
    hex = s[1] === 'x' || s[1] === 'X';
  }
  for (; i < s.length; i++) {
    const c = s[i] as string;
    if (DECIMAL_DIGIT.test(c) || (hex && HEX_DIGIT.test(c))) {
      saw = '0';
      continue;
    }
    if (c === '_') {
      if (saw !== '0') return false;
      saw = '_';
      continue;
    }
    if (saw === '_') return false;
    saw = '!';
  }
  return saw !== '_';
}

/** Go `strconv.special`: inf / infinity (optionally signed) and nan, any case, whole string. */
function special(s: string): number | null {
  let sign = 1;
  let rest = s;
  if (s[0] === '+' || s[0] === '-') {
    if (s[0] === '-') sign = -1;
    rest = s.slice(1);
    const lower = rest.toLowerCase();
    return lower === 'inf' || lower === 'infinity' ? sign * Infinity : null;
  }
  const lower = rest.toLowerCase();
  if (lower === 'inf' || lower === 'infinity') return Infinity;
  if (lower === 'nan') return NaN;
  return null;
}

function bitLength(n: bigint): number {
  return n.toString(2).length;
}

/** mantissa * 2^exp2 rounded to the nearest float64 (ties to even); null on overflow. */
function bigToFloat64(mantissa: bigint, exp2: number): number | null {
  if (mantissa === 0n) return 0;
  const length = bitLength(mantissa);
  const topExponent = length - 1 + exp2;
  if (topExponent > 1023) return null;
  // Keep 53 significant bits, fewer for subnormals (lowest bit weight 2^-1074).
  const keep = topExponent < -1022 ? 53 - (-1022 - topExponent) : 53;
  const shift = length - keep;
  let q: bigint;
  let k: number;
  if (shift > 0) {
    q = mantissa >> BigInt(shift);
    const remainder = mantissa - (q << BigInt(shift));
    const half = 1n << BigInt(shift - 1);
    if (remainder > half || (remainder === half && (q & 1n) === 1n)) q += 1n;
    k = exp2 + shift;
  } else {
    q = mantissa;
    k = exp2;
  }
  if (q === 0n) return 0;
  const value = Number(q) * 2 ** k;
  return Number.isFinite(value) ? value : null;
}

/** Go readFloat's syntax for the decimal and hexadecimal forms (after sign). */
const DECIMAL_FORM = /^[+-]?(?:[0-9_]+\.?[0-9_]*|\.[0-9_]+)(?:[eE][+-]?[0-9][0-9_]*)?$/;
const HEX_FORM = /^[+-]?0[xX](?:[0-9a-fA-F_]+\.?[0-9a-fA-F_]*|\.[0-9a-fA-F_]+)[pP][+-]?[0-9][0-9_]*$/;

/**
 * Go `strconv.ParseFloat(s, 64)`: the value, or null where Go returns an error (syntax,
 * or out of range such as `1e400`). No whitespace, no empty string; `1_000` is fine,
 * `0x10` is not (a hex float needs a `p` exponent).
 */
export function parseGoFloat(s: string): number | null {
  if (s.length === 0) return null;
  const sp = special(s);
  if (sp !== null) return sp;
  if (s.includes('_') && !underscoreOK(s)) return null;
  const negative = s[0] === '-';
  if (HEX_FORM.test(s)) {
    const body = s.replace(/^[+-]/, '').slice(2).replace(/_/g, '');
    const pAt = body.search(/[pP]/);
    const mantissaText = body.slice(0, pAt);
    const exponent = Number(body.slice(pAt + 1));
    const dot = mantissaText.indexOf('.');
    const digits = mantissaText.replace('.', '');
    if (!/[0-9a-fA-F]/.test(digits)) return null;
    const fractionDigits = dot === -1 ? 0 : mantissaText.length - dot - 1;
    // Huge exponents: Go caps them too; the value is 0 or out of range either way.
    const exp2 = Math.max(Math.min(exponent, 100000), -100000) - 4 * fractionDigits;
    const value = bigToFloat64(BigInt(`0x${digits}`), exp2);
    if (value === null) return null;
    return negative ? -value : value;
  }
  if (!DECIMAL_FORM.test(s)) return null;
  const clean = s.replace(/_/g, '');
  if (!/[0-9]/.test(clean.replace(/[eE].*$/, ''))) return null;
  const value = Number(clean);
  if (Number.isNaN(value) || !Number.isFinite(value)) return null;
  return value;
}

/** Exact digits of a float64's integer part (for values JS prints in exponent form). */
function integerDigits(x: number): string {
  return BigInt(x).toString();
}

/**
 * Go `%.Nf`: the exact binary value rounded to N decimals, half to even on exact ties
 * (`2.5` -> `2`, `0.125` -> `0.12`), `-0` kept (`-0.000000`), `+Inf` / `-Inf` / `NaN`.
 */
export function formatGoFixed(v: number, digits: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  const negative = v < 0 || Object.is(v, -0);
  const a = Math.abs(v);
  let body: string;
  if (a >= 1e21) {
    // Every float64 this large is an integer.
    body = digits > 0 ? `${integerDigits(a)}.${'0'.repeat(digits)}` : integerDigits(a);
  } else {
    // An exact tie at N decimals means a * 2^(N+1) is an odd integer.
    const scaled = a * 2 ** (digits + 1);
    if (Number.isInteger(scaled) && scaled % 2 === 1) {
      // a * 10^N = scaled * 5^N / 2 with scaled * 5^N odd: round half to even.
      const twice = BigInt(scaled) * 5n ** BigInt(digits);
      let q = twice / 2n;
      if (q % 2n === 1n) q += 1n;
      const text = q.toString().padStart(digits + 1, '0');
      body = digits > 0 ? `${text.slice(0, text.length - digits)}.${text.slice(text.length - digits)}` : text;
    } else {
      // Not a tie: toFixed rounds the exact value to the nearest, which is what Go does.
      body = a.toFixed(digits);
    }
  }
  return negative ? `-${body}` : body;
}

/** Go `%f` (6 decimals). */
export function formatGoF(v: number): string {
  return formatGoFixed(v, 6);
}
