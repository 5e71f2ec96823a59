import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseClickHouseUrl } from '../src/client.js';

describe('parseClickHouseUrl', () => {
  const cases: Array<[string, { url: string; username: string; password: string; database: string }]> = [
    ['http://u:p@ch.example:8123/pepeunit', { url: 'http://ch.example:8123', username: 'u', password: 'p', database: 'pepeunit' }],
    ['https://ch.example:8443', { url: 'https://ch.example:8443', username: 'default', password: '', database: 'default' }],
    ['clickhouse+native://admin:s%40cret@clickhouse:9000/pu', { url: 'http://clickhouse:8123', username: 'admin', password: 's@cret', database: 'pu' }],
    ['clickhouse://admin:pw@clickhouse/', { url: 'http://clickhouse:8123', username: 'admin', password: 'pw', database: 'default' }],
    ['clickhouse://admin:pw@clickhouse:9440/db', { url: 'https://clickhouse:8443', username: 'admin', password: 'pw', database: 'db' }],
    ['clickhouse+native://h:9000/db?secure=true', { url: 'https://h:8443', username: 'default', password: '', database: 'db' }],
    ['clickhouse://h:18123/db', { url: 'http://h:18123', username: 'default', password: '', database: 'db' }],
    ['http://127.0.0.1:41234/pu_t_abc', { url: 'http://127.0.0.1:41234', username: 'default', password: '', database: 'pu_t_abc' }],
    ['http://[::1]:8123/x', { url: 'http://[::1]:8123', username: 'default', password: '', database: 'x' }],
  ];
  for (const [raw, expected] of cases) {
    test(raw, () => assert.deepEqual(parseClickHouseUrl(raw), expected));
  }
  test('bad input is refused without echoing the password', () => {
    assert.throws(() => parseClickHouseUrl('postgres://u:topsecret@h/db'), (err: unknown) => {
      assert.match((err as Error).message, /Unsupported ClickHouse URL scheme 'postgres'/);
      assert.doesNotMatch((err as Error).message, /topsecret/);
      return true;
    });
    assert.throws(() => parseClickHouseUrl('not a url'), /Invalid ClickHouse URL/);
  });
});
