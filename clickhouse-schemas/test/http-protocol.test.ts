import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseError, ClickHouseError } from '@clickhouse/client';
import {
  ClickHouseServerFailure,
  decodeWireQueryParam,
  failureFromError,
  formatExceptionBody,
  httpStatusForException,
  negotiateEncoding,
  parseMultipart,
  placeholderTypes,
} from '../src/http-protocol.js';

describe('engine errors in ClickHouse HTTP format', () => {
  test('a chdb error becomes a body the client parses into ClickHouseError with code and type', () => {
    const failure = failureFromError(new Error("Code: 60. DB::Exception: Unknown table expression identifier 'x' in scope SELECT * FROM x. (UNKNOWN_TABLE)"));
    assert.equal(failure.code, 60);
    assert.equal(failure.exceptionName, 'UNKNOWN_TABLE');
    const body = formatExceptionBody(failure, '26.7.2.1');
    assert.equal(body, "Code: 60. DB::Exception: Unknown table expression identifier 'x' in scope SELECT * FROM x. (UNKNOWN_TABLE) (version 26.7.2.1)\n");
    const parsed = parseError(body);
    assert.ok(parsed instanceof ClickHouseError);
    assert.equal(parsed.code, '60');
    assert.equal(parsed.type, 'UNKNOWN_TABLE');
  });
  test('nested engine messages are unwrapped to the innermost one', () => {
    const failure = failureFromError(new Error('Code: 73. DB::Exception: Code: 73. DB::Exception: Unknown format Nope. (UNKNOWN_FORMAT) (version 26.7.2.1). (UNKNOWN_FORMAT)'));
    assert.equal(failure.message, 'Unknown format Nope.');
    assert.equal(failure.code, 73);
  });
  test('status codes follow clickhouse-server', () => {
    assert.equal(httpStatusForException('UNKNOWN_TABLE'), 404);
    assert.equal(httpStatusForException('UNKNOWN_DATABASE'), 404);
    assert.equal(httpStatusForException('SYNTAX_ERROR'), 400);
    assert.equal(httpStatusForException('AUTHENTICATION_FAILED'), 403);
    assert.equal(httpStatusForException('QUERY_IS_TOO_LARGE'), 413);
    assert.equal(httpStatusForException('MEMORY_LIMIT_EXCEEDED'), 500);
    assert.equal(ClickHouseServerFailure.of('BAD_ARGUMENTS', 'x').code, 36);
  });
});

describe('query parameters from the wire', () => {
  // [value, how @clickhouse/client sends it as param_x (its formatQueryParams)]
  const samples: Array<[string, string]> = [
    ['plain', 'plain'],
    ["it's", "it\\'s"],
    ['back\\slash', 'back\\\\slash'],
    ['tab\there', 'tab\\there'],
    ['new\nline', 'new\\nline'],
    ['cr\r', 'cr\\r'],
  ];
  test('scalar strings: the wire escaping is undone so chdb can re-escape the same value', () => {
    for (const [value, wire] of samples) assert.equal(decodeWireQueryParam(wire, 'String'), value, `wire ${JSON.stringify(wire)}`);
    // Escapes ClickHouse does not know keep their backslash, as the server reads them.
    assert.equal(decodeWireQueryParam('100\\%', 'String'), '100\\%');
    assert.equal(decodeWireQueryParam('\\x41', 'String'), 'A');
  });
  test('composite literals keep SQL quoting; escaped quotes become doubled quotes', () => {
    const wire = "['it\\'s','b\\\\c']"; // the client's form of ["it's", 'b\\c']
    assert.equal(decodeWireQueryParam(wire, 'Array(String)'), "['it''s','b\\c']");
    assert.equal(decodeWireQueryParam('\\N', 'Nullable(String)'), null);
    assert.equal(decodeWireQueryParam('[1,2]', 'Array(UInt8)'), '[1,2]');
  });
  test('placeholder types are read from the query', () => {
    assert.deepEqual(
      [...placeholderTypes('SELECT {a:String}, { b : Array(UInt8) } WHERE x IN {ids:Array(UUID)}')],
      [['a', 'String'], ['b', 'Array(UInt8)'], ['ids', 'Array(UUID)']],
    );
  });
});

describe('HTTP helpers', () => {
  test('multipart/form-data fields', () => {
    const body = Buffer.from('--XYZ\r\nContent-Disposition: form-data; name="query"\r\n\r\nSELECT {a:String}\r\n--XYZ\r\nContent-Disposition: form-data; name="param_a"\r\n\r\nx\r\ny\r\n--XYZ--\r\n');
    const fields = parseMultipart(body, 'XYZ');
    assert.deepEqual(fields.map((f) => [f.name, f.value.toString()]), [['query', 'SELECT {a:String}'], ['param_a', 'x\r\ny']]);
    assert.throws(() => parseMultipart(Buffer.from('garbage'), 'XYZ'), /boundary not found/);
  });
  test('Accept-Encoding negotiation honours order and q=0', () => {
    assert.equal(negotiateEncoding('gzip', ['gzip', 'deflate']), 'gzip');
    assert.equal(negotiateEncoding('zstd, deflate;q=0.5, gzip', ['gzip', 'deflate']), 'deflate');
    assert.equal(negotiateEncoding('gzip;q=0, br', ['gzip', 'br']), 'br');
    assert.equal(negotiateEncoding(undefined, ['gzip']), undefined);
  });
});
