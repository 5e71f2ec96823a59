/**
 * CSV text in and out, as Python's `csv` module reads and writes it (the reference's format):
 * comma separated, `"` quoting with `""` escapes, quoted fields may hold commas and line
 * breaks, records end with CRLF, LF or CR. Writing uses QUOTE_MINIMAL and CRLF like
 * `csv.writer`. Pure functions; no package needed.
 */

export class CsvSyntaxError extends Error {
  /** 1-based line of the file where the problem is. */
  readonly line: number;
  constructor(message: string, line: number) {
    super(`line ${line}: ${message}`);
    this.name = 'CsvSyntaxError';
    this.line = line;
  }
}

export class CsvTooManyRowsError extends Error {
  constructor(readonly maxRows: number) {
    super(`CSV file has more than ${maxRows} data rows (the limit)`);
    this.name = 'CsvTooManyRowsError';
  }
}

export interface CsvRecord {
  readonly fields: string[];
  /** 1-based line where the record starts. */
  readonly line: number;
}

/**
 * Parses CSV text into records (the first is the header). Empty lines are skipped, as Python's
 * DictReader does. A UTF-8 BOM is ignored. `maxRecords` bounds the records kept (header
 * included); one more raises `CsvTooManyRowsError`.
 */
export function parseCsv(input: string, maxRecords = Number.POSITIVE_INFINITY): CsvRecord[] {
  const text = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input;
  const records: CsvRecord[] = [];
  const n = text.length;
  let i = 0;
  let line = 1;
  while (i < n) {
    const startLine = line;
    // An empty line (or a lone line break at the end): no record.
    const c0 = text.charCodeAt(i);
    if (c0 === 0x0a || c0 === 0x0d) {
      i += c0 === 0x0d && text.charCodeAt(i + 1) === 0x0a ? 2 : 1;
      line++;
      continue;
    }
    const fields: string[] = [];
    let endOfRecord = false;
    while (!endOfRecord) {
      let value = '';
      if (text.charCodeAt(i) === 0x22) {
        // Quoted field.
        const quoteLine = line;
        i++;
        let closed = false;
        while (i < n) {
          const c = text.charCodeAt(i);
          if (c === 0x22) {
            if (text.charCodeAt(i + 1) === 0x22) {
              value += '"';
              i += 2;
              continue;
            }
            i++;
            closed = true;
            break;
          }
          if (c === 0x0d || c === 0x0a) {
            // Line breaks inside quotes are data; count lines for messages.
            if (c === 0x0d && text.charCodeAt(i + 1) === 0x0a) {
              value += '\r\n';
              i += 2;
            } else {
              value += text[i];
              i++;
            }
            line++;
            continue;
          }
          // Copy a run of ordinary characters at once.
          let j = i + 1;
          while (j < n) {
            const d = text.charCodeAt(j);
            if (d === 0x22 || d === 0x0d || d === 0x0a) break;
            j++;
          }
          value += text.slice(i, j);
          i = j;
        }
        if (!closed) throw new CsvSyntaxError('a quoted field is not closed (missing ")', quoteLine);
        const next = text.charCodeAt(i);
        if (i < n && next !== 0x2c && next !== 0x0a && next !== 0x0d) {
          throw new CsvSyntaxError(`unexpected character ${JSON.stringify(text[i])} after a closing quote (expected , or the end of the line)`, line);
        }
      } else {
        // Unquoted field: up to the next comma or line break (quotes inside are kept as data).
        let j = i;
        while (j < n) {
          const d = text.charCodeAt(j);
          if (d === 0x2c || d === 0x0a || d === 0x0d) break;
          j++;
        }
        value = text.slice(i, j);
        i = j;
      }
      fields.push(value);
      if (i >= n) {
        endOfRecord = true;
      } else {
        const c = text.charCodeAt(i);
        if (c === 0x2c) {
          i++;
          // A trailing comma at the end of input or line means one more empty field.
          if (i >= n) {
            fields.push('');
            endOfRecord = true;
          }
        } else {
          i += c === 0x0d && text.charCodeAt(i + 1) === 0x0a ? 2 : 1;
          line++;
          endOfRecord = true;
        }
      }
    }
    if (records.length >= maxRecords) throw new CsvTooManyRowsError(maxRecords - 1);
    records.push({ fields, line: startLine });
  }
  return records;
}

/** A plain decimal number: safe in a spreadsheet even with a leading sign. */
const PLAIN_NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
/** First characters a spreadsheet reads as the start of a formula (OWASP "CSV injection"). */
const FORMULA_START = /^[=+\-@\t\r]/;

/**
 * A text cell made inert for spreadsheets (issue 10.15): a value that would start a formula is
 * prefixed with `'`, which spreadsheets show as text; numbers (`-12.5`) stay as they are.
 * `fromSpreadsheetSafe` undoes it on import, so an exported file imports back unchanged.
 */
export function spreadsheetSafe(value: string): string {
  return FORMULA_START.test(value) && !PLAIN_NUMBER.test(value) ? `'${value}` : value;
}

export function fromSpreadsheetSafe(value: string): string {
  return value.startsWith("'") && FORMULA_START.test(value.slice(1)) && !PLAIN_NUMBER.test(value.slice(1)) ? value.slice(1) : value;
}

/** One field with QUOTE_MINIMAL. */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** One record with the CRLF terminator of Python's `csv.writer`. */
export function csvLine(fields: readonly string[]): string {
  return `${fields.map(csvField).join(',')}\r\n`;
}
