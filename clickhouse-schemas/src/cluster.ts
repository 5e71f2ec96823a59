/**
 * The cluster variant of the ClickHouse migrations, derived from the single-node files.
 *
 * The numbered files stay what they are (the single-node SQL, checksummed once applied); for a
 * ClickHouse cluster each statement is rewritten the way reference/wave2-integrations.md §8
 * describes:
 * - every DDL statement gets `ON CLUSTER '<cluster>'`, so all hosts run it through Keeper's
 *   DDL queue;
 * - MergeTree-family engines become their `Replicated*` form with the Keeper path
 *   `/clickhouse/tables/{shard}/{database}/{table}` and the replica `{replica}` (macros each
 *   server expands itself; `{database}` and `{table}` are built in);
 * - with several shards a MergeTree table is created as `<name>_local` and a Distributed table
 *   keeps the reference name, sharded by `cityHash64(<first ORDER BY column>)` so the rows of one
 *   unit / node stay together. With one shard (replicas only) the tables keep their names.
 *
 * Rewriting works on the lexer's tokens and splices the original text, so comments, layout and
 * everything not named above stay byte for byte. Statements the rewrite does not understand are
 * refused with the file name: a migration that cannot run on a cluster must be noticed when it
 * is written (the golden-file tests render every shipped file), not on a production cluster.
 */
import { splitSqlStatements, tokenizeSql, type SqlToken } from './sql-lexer.js';

/** The cluster the migrations run on, as named in the servers' `remote_servers`. */
export interface ClickHouseClusterLayout {
  /** Cluster name (the `ON CLUSTER` target and the Distributed engine's cluster). */
  readonly cluster: string;
  /** Shards of the cluster: 1 = replicated tables under the reference names; more = `_local` tables behind Distributed tables. */
  readonly shards: number;
}

/** Keeper path of every replicated table; the server expands the macros. */
export const REPLICATED_TABLE_PATH = '/clickhouse/tables/{shard}/{database}/{table}';
/** Replica name inside a shard; the server expands the macro. */
export const REPLICA_NAME = '{replica}';
/** Suffix of the data-holding tables when there are several shards. */
export const LOCAL_TABLE_SUFFIX = '_local';

/** A statement the cluster rewrite cannot handle. */
export class ClusterRenderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClusterRenderError';
  }
}

const CLUSTER_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const MERGE_TREE_ENGINE = /^(|Replacing|Summing|Aggregating|Collapsing|VersionedCollapsing|Graphite|Coalescing)MergeTree$/;
const COLUMN_ALTER = /^(ADD|DROP|MODIFY|RENAME|COMMENT|CLEAR)$/;

/** Throws unless `layout` is usable; returns the quoted cluster name for SQL. */
export function checkClusterLayout(layout: ClickHouseClusterLayout): string {
  if (!CLUSTER_NAME.test(layout.cluster)) {
    throw new ClusterRenderError(`Invalid ClickHouse cluster name ${JSON.stringify(layout.cluster)} (expected letters, digits, '_', '.', '-')`);
  }
  if (!Number.isInteger(layout.shards) || layout.shards < 1) {
    throw new ClusterRenderError(`Invalid number of shards ${String(layout.shards)} for ClickHouse cluster '${layout.cluster}' (expected an integer >= 1)`);
  }
  return `'${layout.cluster}'`;
}

function quoteString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** Unquoted name of an identifier token. */
function identifierName(token: SqlToken): string {
  return token.kind === 'quoted_identifier' ? token.text.slice(1, -1) : token.text;
}

function isWord(token: SqlToken | undefined, ...words: string[]): boolean {
  return token !== undefined && token.kind === 'word' && words.includes(token.text.toUpperCase());
}

/** Index of the token closing the bracket opened at `open`. */
function matchingClose(tokens: readonly SqlToken[], open: number): number {
  let depth = 0;
  for (let i = open; i < tokens.length; i++) {
    const t = tokens[i] as SqlToken;
    if (t.kind === 'open') depth += 1;
    else if (t.kind === 'close') {
      depth -= 1;
      if (depth === 0) return i;
    }
  }
  throw new ClusterRenderError('unbalanced brackets');
}

/** Index of the first top-level word `word` at or after `from`, or -1. */
function findTopLevelWord(tokens: readonly SqlToken[], from: number, word: string): number {
  let depth = 0;
  for (let i = from; i < tokens.length; i++) {
    const t = tokens[i] as SqlToken;
    if (t.kind === 'open') depth += 1;
    else if (t.kind === 'close') depth -= 1;
    else if (depth === 0 && isWord(t, word)) return i;
  }
  return -1;
}

interface Splice {
  readonly start: number;
  readonly end: number;
  readonly text: string;
}

function applySplices(sql: string, splices: Splice[]): string {
  let out = sql;
  for (const s of [...splices].sort((a, b) => b.start - a.start)) out = out.slice(0, s.start) + s.text + out.slice(s.end);
  return out;
}

/** Position of the table name of `<CREATE|ALTER|DROP> TABLE [IF [NOT] EXISTS] name`, refusing `db.name`. */
function tableNameAt(tokens: readonly SqlToken[], afterTable: number, what: string): number {
  let i = afterTable;
  if (isWord(tokens[i], 'IF')) {
    i += 1;
    if (isWord(tokens[i], 'NOT')) i += 1;
    if (!isWord(tokens[i], 'EXISTS')) throw new ClusterRenderError(`${what}: expected EXISTS after IF`);
    i += 1;
  }
  const name = tokens[i];
  if (!name || (name.kind !== 'word' && name.kind !== 'quoted_identifier')) throw new ClusterRenderError(`${what}: table name not found`);
  if (tokens[i + 1]?.text === '.') {
    throw new ClusterRenderError(`${what}: database-qualified table names are not supported (migrations run in the database the runner selects)`);
  }
  if (isWord(tokens[i + 1], 'ON') && isWord(tokens[i + 2], 'CLUSTER')) {
    throw new ClusterRenderError(`${what}: the statement already has ON CLUSTER; migrations are written for one node and rendered for the cluster`);
  }
  return i;
}

/** `cityHash64(<first ORDER BY column>)`, the sharding key of a Distributed table (rand() without a key). */
function shardingKey(sql: string, tokens: readonly SqlToken[], from: number): string {
  const orderBy = findTopLevelWord(tokens, from, 'ORDER');
  if (orderBy < 0 || !isWord(tokens[orderBy + 1], 'BY')) return 'rand()';
  let i = orderBy + 2;
  let endToken: number;
  if (tokens[i]?.kind === 'open' && tokens[i]?.text === '(') {
    const close = matchingClose(tokens, i);
    i += 1;
    if (i === close) return 'rand()'; // ORDER BY ()
    let depth = 0;
    endToken = i;
    while (endToken < close) {
      const t = tokens[endToken] as SqlToken;
      if (t.kind === 'open') depth += 1;
      else if (t.kind === 'close') depth -= 1;
      else if (depth === 0 && t.text === ',') break;
      endToken += 1;
    }
  } else {
    if (isWord(tokens[i], 'TUPLE') && tokens[i + 1]?.text === '(' && tokens[i + 2]?.text === ')') return 'rand()';
    endToken = i + 1;
    if (tokens[endToken]?.kind === 'open') endToken = matchingClose(tokens, endToken) + 1;
  }
  const first = tokens[i] as SqlToken;
  const last = tokens[endToken - 1] as SqlToken;
  return `cityHash64(${sql.slice(first.start, last.end)})`;
}

/** What earlier statements created, needed to render later ones (ALTER/DROP of a sharded table). */
export interface ClusterRenderState {
  /** Tables that live as `<name>_local` behind a Distributed `<name>`. */
  readonly shardedTables: Set<string>;
}

export function newClusterRenderState(): ClusterRenderState {
  return { shardedTables: new Set() };
}

function renderCreateTable(sql: string, tokens: readonly SqlToken[], layout: ClickHouseClusterLayout, database: string, state: ClusterRenderState): string[] {
  const onCluster = checkClusterLayout(layout);
  const nameIndex = tableNameAt(tokens, 2, 'CREATE TABLE');
  const nameToken = tokens[nameIndex] as SqlToken;
  const name = identifierName(nameToken);
  const engineIndex = findTopLevelWord(tokens, nameIndex + 1, 'ENGINE');
  if (engineIndex < 0) throw new ClusterRenderError(`CREATE TABLE ${name}: no ENGINE clause (name the engine explicitly so the cluster variant can replicate it)`);
  let engineNameIndex = engineIndex + 1;
  if (tokens[engineNameIndex]?.text === '=') engineNameIndex += 1;
  const engineToken = tokens[engineNameIndex];
  if (!engineToken || engineToken.kind !== 'word') throw new ClusterRenderError(`CREATE TABLE ${name}: engine name not found`);
  const engine = engineToken.text;
  if (engine.startsWith('Replicated')) {
    throw new ClusterRenderError(`CREATE TABLE ${name}: already uses ${engine}; write the single-node engine, the cluster variant adds replication`);
  }

  const splices: Splice[] = [];
  const mergeTree = MERGE_TREE_ENGINE.test(engine);
  const sharded = mergeTree && layout.shards > 1;
  const localName = sharded ? `${name}${LOCAL_TABLE_SUFFIX}` : name;
  splices.push({
    start: nameToken.start,
    end: nameToken.end,
    text: `${nameToken.kind === 'quoted_identifier' ? `\`${localName}\`` : localName} ON CLUSTER ${onCluster}`,
  });
  if (mergeTree) {
    const replicationArgs = `${quoteString(REPLICATED_TABLE_PATH)}, ${quoteString(REPLICA_NAME)}`;
    const open = tokens[engineNameIndex + 1];
    if (open?.kind === 'open' && open.text === '(') {
      const close = tokens[matchingClose(tokens, engineNameIndex + 1)] as SqlToken;
      const inner = sql.slice(open.end, close.start).trim();
      splices.push({ start: engineToken.start, end: close.end, text: `Replicated${engine}(${replicationArgs}${inner ? `, ${inner}` : ''})` });
    } else {
      splices.push({ start: engineToken.start, end: engineToken.end, text: `Replicated${engine}(${replicationArgs})` });
    }
  }
  const statements = [applySplices(sql, splices)];
  if (sharded) {
    state.shardedTables.add(name);
    const key = shardingKey(sql, tokens, engineNameIndex);
    const ifNotExists = isWord(tokens[2], 'IF') ? 'IF NOT EXISTS ' : '';
    statements.push(
      `CREATE TABLE ${ifNotExists}${name} ON CLUSTER ${onCluster} AS ${localName}\n` +
        `ENGINE = Distributed(${onCluster}, ${quoteString(database)}, ${quoteString(localName)}, ${key})`,
    );
  }
  return statements;
}

function renderAlterTable(sql: string, tokens: readonly SqlToken[], layout: ClickHouseClusterLayout, state: ClusterRenderState): string[] {
  const onCluster = checkClusterLayout(layout);
  const nameIndex = tableNameAt(tokens, 2, 'ALTER TABLE');
  const nameToken = tokens[nameIndex] as SqlToken;
  const name = identifierName(nameToken);
  const onName = (target: string) => applySplices(sql, [{ start: nameToken.start, end: nameToken.end, text: `${target} ON CLUSTER ${onCluster}` }]);
  if (!state.shardedTables.has(name)) return [onName(name)];
  // Data and TTL changes belong to the local tables; column changes also to the Distributed one, whose structure mirrors them.
  const statements = [onName(`${name}${LOCAL_TABLE_SUFFIX}`)];
  const columnChange = tokens.slice(nameIndex + 1).some((t, k, rest) => COLUMN_ALTER.test(t.text.toUpperCase()) && isWord(rest[k + 1], 'COLUMN'));
  if (columnChange) statements.push(onName(name));
  return statements;
}

function renderDropTable(sql: string, tokens: readonly SqlToken[], layout: ClickHouseClusterLayout, state: ClusterRenderState): string[] {
  const onCluster = checkClusterLayout(layout);
  const nameIndex = tableNameAt(tokens, 2, 'DROP TABLE');
  const nameToken = tokens[nameIndex] as SqlToken;
  const name = identifierName(nameToken);
  const onName = (target: string) => applySplices(sql, [{ start: nameToken.start, end: nameToken.end, text: `${target} ON CLUSTER ${onCluster}` }]);
  if (!state.shardedTables.has(name)) return [onName(name)];
  state.shardedTables.delete(name);
  return [onName(name), onName(`${name}${LOCAL_TABLE_SUFFIX}`)];
}

/**
 * Renders one single-node statement for the cluster; returns one or more statements.
 * `state` carries what earlier statements created (render files in order with one state).
 */
export function renderStatementForCluster(statement: string, layout: ClickHouseClusterLayout, database: string, state: ClusterRenderState): string[] {
  const tokens = tokenizeSql(statement);
  const [first, second] = tokens;
  if (isWord(first, 'CREATE') && isWord(second, 'TABLE')) return renderCreateTable(statement, tokens, layout, database, state);
  if (isWord(first, 'ALTER') && isWord(second, 'TABLE')) return renderAlterTable(statement, tokens, layout, state);
  if (isWord(first, 'DROP') && isWord(second, 'TABLE')) return renderDropTable(statement, tokens, layout, state);
  const head = tokens.slice(0, 3).map((t) => t.text).join(' ');
  throw new ClusterRenderError(
    `'${head} ...' has no cluster variant yet (supported: CREATE TABLE, ALTER TABLE, DROP TABLE); extend clickhouse-schemas/src/cluster.ts before shipping it`,
  );
}

/** Renders every statement of a migration file for the cluster, in order. */
export function renderMigrationForCluster(sql: string, layout: ClickHouseClusterLayout, database: string, state: ClusterRenderState, fileName = 'migration'): string[] {
  return splitSqlStatements(sql).flatMap((statement, index) => {
    try {
      return renderStatementForCluster(statement, layout, database, state);
    } catch (err) {
      if (err instanceof ClusterRenderError) throw new ClusterRenderError(`${fileName} (statement ${index + 1}): ${err.message}`);
      throw err;
    }
  });
}

/** DDL of the runner's own tracking table: one replica set spanning every host, so each host sees the whole history. */
export function clusterTrackingTableDdl(table: string, layout: ClickHouseClusterLayout): string {
  const onCluster = checkClusterLayout(layout);
  return (
    `CREATE TABLE IF NOT EXISTS ${table} ON CLUSTER ${onCluster} (version UInt32, name String, checksum String, applied_at DateTime64(3)) ` +
    `ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{database}/{table}', '{replica}') ORDER BY version`
  );
}
