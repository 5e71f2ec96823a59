/**
 * The tar / zip / "tgz" archives checked with independent readers: GNU tar, Info-ZIP unzip and
 * Python's tarfile / zipfile / zlib, plus the MicroPython client's tar conventions.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile, chmod, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { Readable } from 'node:stream';
import {
  VALID_LEVELS,
  VALID_WBITS,
  assertTgzParameters,
  buildFirmware,
  cleanupStaleBuilds,
  collectEntries,
  createTgzCompressor,
  firmwareArchiveStream,
  pythonIndentedJson,
  tarStream,
  zipStream,
} from '../../src/services/firmware/index.ts';
import { PepeunitError } from '../../src/errors.ts';
import { waitFor } from '@pepeunit/tests/wait';

const exec = promisify(execFile);
const root = await mkdtemp(join(tmpdir(), 'pu-archive-'));
after(() => rm(root, { recursive: true, force: true }));

const LONG_DIR = 'd'.repeat(60) + '/' + 'e'.repeat(60);
const FILES: Record<string, Buffer> = {
  'main.py': Buffer.from('print("hello")\n'),
  'empty.txt': Buffer.alloc(0),
  'lib/util.py': Buffer.from('X = 1\n'.repeat(1000)),
  'lib/deep/nested/data.bin': randomBytes(70_000),
  [`${LONG_DIR}/long_name_file.txt`]: Buffer.from('ustar prefix split\n'),
  [`${'p'.repeat(120)}/${'q'.repeat(120)}.txt`]: Buffer.from('needs a pax header\n'),
  'unicodé/файл.txt': Buffer.from('non-ascii name\n'),
};

async function makeSource(): Promise<string> {
  const dir = await mkdtemp(join(root, 'src-'));
  for (const [path, content] of Object.entries(FILES)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  await chmod(join(dir, 'main.py'), 0o755);
  return dir;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function python(script: string, ...args: string[]): Promise<string> {
  const { stdout } = await exec('python3', ['-c', script, ...args], { maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

async function assertTreeMatches(dir: string): Promise<void> {
  for (const [path, content] of Object.entries(FILES)) {
    const actual = await readFile(join(dir, path));
    assert.ok(actual.equals(content), `content of ${path}`);
  }
}

/** The raw ustar headers of a tar: 100-byte name field, mode, size, mtime, type (what MicroPython sees). */
function rawTarHeaders(tar: Buffer): { name: string; mode: number; size: number; mtime: number; type: string }[] {
  const headers: { name: string; mode: number; size: number; mtime: number; type: string }[] = [];
  for (let offset = 0; offset + 512 <= tar.length; ) {
    const header = tar.subarray(offset, offset + 512);
    if (header[0] === 0) break;
    const field = (from: number, to: number): string => header.subarray(from, to).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(field(124, 136), 8);
    headers.push({ name: field(0, 100), mode: parseInt(field(100, 108), 8), size, mtime: parseInt(field(136, 148), 8), type: String.fromCharCode(header[156]!) });
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return headers;
}

test('tar: GNU tar and Python tarfile extract every file byte for byte; layout as devices expect', async () => {
  const source = await makeSource();
  const entries = await collectEntries(source);
  const tar = await collect(tarStream(entries));
  assert.equal(tar.length % 10240, 0, 'padded to a full 10240-byte record like Python');
  const file = join(root, 'a.tar');
  await writeFile(file, tar);

  const gnu = await mkdtemp(join(root, 'gnu-'));
  await exec('tar', ['-xf', file, '-C', gnu]);
  await assertTreeMatches(gnu);
  assert.equal((await stat(join(gnu, 'main.py'))).mode & 0o777, 0o755, 'executable bit kept');

  const names = JSON.parse(await python('import tarfile,sys,json; print(json.dumps([(m.name, m.type.decode()) for m in tarfile.open(sys.argv[1])]))', file)) as [string, string][];
  assert.equal(names[0]![0], '.', 'root directory first');
  for (const [name] of names) assert.ok(name === '.' || name.startsWith('./'), `${name} starts with ./`);
  assert.ok(names.some(([name, type]) => name === './lib' && type === '5'));
  const py = await mkdtemp(join(root, 'py-'));
  await python('import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])', file, py);
  await assertTreeMatches(py);

  // MicroPython's tarfile: 100-byte name field, type from a trailing "/", client strips "./"
  // and skips entries whose name contains "@PaxHeader".
  const headers = rawTarHeaders(tar);
  for (const header of headers) if (header.type === '5') assert.ok(header.name.endsWith('/'), `directory ${header.name} ends with /`);
  const seen = headers.filter((header) => header.type === '0').map((header) => header.name.slice(2));
  assert.ok(seen.includes('main.py') && seen.includes('lib/util.py'));
  assert.ok(seen.includes('unicodé/файл.txt'), 'a short non-ASCII name stays UTF-8 in the ustar name field');
  assert.ok(seen.includes(`${LONG_DIR}/long_name_file.txt`.slice(0, 98)), 'a name over 100 bytes is cut to 100 bytes for readers without PAX');
  const longIndex = headers.findIndex((header) => header.name.startsWith(`./${LONG_DIR.slice(0, 20)}`) && header.type === '0');
  assert.deepEqual(
    { name: headers[longIndex - 1]!.name, type: headers[longIndex - 1]!.type },
    { name: '././@PaxHeader', type: 'x' },
    'the PAX header before a long name is named like Python does (the client skips "@PaxHeader")',
  );
  assert.equal(headers.filter((header) => header.type === 'x').length, 4, 'PAX only for the names over 100 bytes (two directories, two files)');
  const emptyFile = headers.find((header) => header.name === './empty.txt')!;
  assert.equal(emptyFile.size, 0);
  assert.equal(headers.find((header) => header.name === './main.py')!.mode, 0o755);
  assert.equal(headers.find((header) => header.name === './lib/util.py')!.mode, 0o644);
  assert.equal(headers.find((header) => header.name === './lib/')!.mode, 0o755);
  assert.ok(headers.every((header) => header.mtime === entries[0]!.mtime), 'every entry carries the build time');
  assert.equal((await stat(join(gnu, 'empty.txt'))).size, 0, 'empty files extract as empty files');
});

test('zip: unzip -t, Python zipfile and unzip extraction agree with the source', async () => {
  const source = await makeSource();
  const entries = await collectEntries(source);
  const zip = await collect(zipStream(entries));
  const file = join(root, 'a.zip');
  await writeFile(file, zip);
  const { stdout } = await exec('unzip', ['-t', file]);
  assert.match(stdout, /No errors detected/);
  assert.equal((await python('import zipfile,sys; print(zipfile.ZipFile(sys.argv[1]).testzip())', file)).trim(), 'None');
  const names = JSON.parse(await python('import zipfile,sys,json; print(json.dumps(zipfile.ZipFile(sys.argv[1]).namelist()))', file)) as string[];
  assert.ok(names.includes('main.py') && names.includes('lib/') && !names.some((n) => n.startsWith('./')));
  const out = await mkdtemp(join(root, 'unzip-'));
  await python('import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])', file, out);
  await assertTreeMatches(out);
  const infoZip = await mkdtemp(join(root, 'infozip-'));
  await exec('unzip', ['-q', file, '-d', infoZip]);
  await assertTreeMatches(infoZip);
  assert.equal((await stat(join(infoZip, 'main.py'))).mode & 0o777, 0o755, 'executable bit kept');
  const info = JSON.parse(
    await python('import zipfile,sys,json; print(json.dumps({i.filename: [i.external_attr >> 16, list(i.date_time), i.file_size] for i in zipfile.ZipFile(sys.argv[1]).infolist()}))', file),
  ) as Record<string, [number, number[], number]>;
  assert.equal(info['main.py']![0], 0o100755);
  assert.equal(info['lib/util.py']![0], 0o100644);
  assert.equal(info['lib/']![0], 0o040755);
  assert.equal(info['empty.txt']![2], 0, 'empty file listed with size 0');
  assert.ok('unicodé/файл.txt' in info, 'non-ASCII names decode as UTF-8');
  // zip stores local time with 2-second resolution, like Python's zipfile
  const built = new Date(entries[0]!.mtime * 1000);
  const [year, month, day, hours, minutes, seconds] = info['main.py']![1] as [number, number, number, number, number, number];
  const stored = new Date(year, month - 1, day, hours, minutes, seconds).getTime();
  assert.ok(Math.abs(stored - built.getTime()) <= 2000, `zip mtime ${new Date(stored).toISOString()} is the build time ${built.toISOString()}`);
});

test('a file that vanished or changed size fails the archive stream instead of hanging or corrupting it', async () => {
  const source = await makeSource();
  const entries = await collectEntries(source);
  await rm(join(source, 'lib/util.py'));
  await assert.rejects(collect(zipStream(entries)), /ENOENT/);
  await assert.rejects(collect(tarStream(entries)), /ENOENT/);
  await writeFile(join(source, 'lib/util.py'), 'grown\n'.repeat(2000));
  await assert.rejects(collect(tarStream(entries)), /exceeds given size|size mismatch/i);
});

test('tgz: every valid wbits/level decompresses with Python zlib.decompress(data, wbits) to the same tar', async () => {
  const source = await makeSource();
  const entries = await collectEntries(source);
  const tar = await collect(tarStream(entries));
  const cases: [number, number][] = [
    [9, 9],
    [-9, 1],
    [-15, -1],
    [15, 0],
    [12, 6],
    [25, 9],
    [31, 5],
  ];
  for (const [wbits, level] of cases) {
    const compressed = await collect(tarStream(entries).pipe(createTgzCompressor(wbits, level)));
    const file = join(root, `w${wbits}-l${level}.bin`);
    await writeFile(file, compressed);
    const digest = await python(
      'import zlib,sys,hashlib; d=zlib.decompress(open(sys.argv[1],"rb").read(), int(sys.argv[2])); print(hashlib.sha256(d).hexdigest())',
      file,
      String(wbits),
    );
    const expected = (await import('node:crypto')).createHash('sha256').update(tar).digest('hex');
    assert.equal(digest.trim(), expected, `wbits ${wbits} level ${level}`);
    if (wbits >= 25) assert.equal(compressed.subarray(0, 2).toString('hex'), '1f8b', 'gzip framing for wbits 25..31');
    if (wbits >= 9 && wbits <= 15) assert.equal(compressed[0]! & 0x0f, 8, 'zlib header (deflate) for wbits 9..15');
  }
  // wbits 9 must decompress with a 512-byte window (MicroPython DeflateIO(f, AUTO, 9)).
  const small = await collect(tarStream(entries).pipe(createTgzCompressor(9, 9)));
  assert.equal(small[0]! >> 4, 1, 'CINFO = 1: a 2^9 window');
});

test('tgz parameters: reference ranges and messages', () => {
  assert.equal(VALID_WBITS.length, 7 + 7 + 7);
  assert.deepEqual(VALID_LEVELS, [-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  for (const [wbits, level] of [[35, 9], [8, 9], [16, 9], [-8, 9], [32, 9], [9, 10], [9, 13], [9, -2]] as const) {
    assert.throws(() => assertTgzParameters(wbits, level), (error: unknown) => {
      assert.ok(error instanceof PepeunitError);
      assert.equal(error.statusCode, 422);
      assert.match(error.message, /^422: 7: Unit Validation Error: (Wbits|Level) -?\d+ is not valid, available \[/);
      return true;
    });
  }
  assert.doesNotThrow(() => assertTgzParameters(-15, -1));
});

test('buildFirmware: .pepeignore applied, env.json/schema.json written with 4-space indent, directory removed after streaming', async () => {
  const source = await makeSource();
  await writeFile(join(source, '.pepeignore'), 'lib/deep/\n*.txt\n!main.py\n');
  const exporter = {
    async exportTree(_key: string, _commit: string, destination: string) {
      await exec('cp', ['-a', `${source}/.`, destination]);
    },
  };
  const workRoot = join(root, 'work');
  const build = await buildFirmware({
    source: { store: exporter, key: 'k', commit: 'c' },
    env: { PU_DOMAIN: 'ex.com', NAME: 'café' },
    schema: { input_topic: {} },
    workRoot,
  });
  const paths = build.entries.map((entry) => entry.path);
  assert.ok(paths.includes('main.py') && paths.includes('lib/util.py') && paths.includes('env.json') && paths.includes('schema.json'));
  assert.ok(!paths.some((path) => path.endsWith('.txt')), 'ignored *.txt files are gone');
  assert.ok(!paths.some((path) => path.startsWith('lib/deep')), 'ignored directory is gone');
  const env = await readFile(join(build.directory, 'env.json'), 'utf8');
  assert.equal(env, '{\n    "PU_DOMAIN": "ex.com",\n    "NAME": "caf\\u00e9"\n}');
  assert.equal(pythonIndentedJson({ a: [1] }), '{\n    "a": [\n        1\n    ]\n}');

  const stream = firmwareArchiveStream(build, 'tgz', { wbits: 9, level: 9 });
  const data = await collect(stream);
  assert.ok(data.length > 0);
  await waitFor(async () => (await readdir(workRoot)).length === 0, { what: 'the build directory removed after the stream closed' });

  // An aborted download cleans up too.
  const build2 = await buildFirmware({ source: null, env: {}, schema: {}, workRoot });
  assert.deepEqual(build2.entries.map((e) => e.path), ['', 'env.json', 'schema.json'], 'compilable: only env.json and schema.json');
  const aborted = firmwareArchiveStream(build2, 'zip');
  aborted.destroy();
  await waitFor(async () => (await readdir(workRoot)).length === 0, { what: 'the build directory removed after an aborted download' });
});

test('cleanupStaleBuilds removes only build directories older than the limit', async () => {
  const workRoot = join(root, 'stale');
  await mkdir(join(workRoot, 'old'), { recursive: true });
  await mkdir(join(workRoot, 'fresh'), { recursive: true });
  const hourAgo = new Date(Date.now() - 2 * 3600_000);
  await utimes(join(workRoot, 'old'), hourAgo, hourAgo);
  assert.equal(await cleanupStaleBuilds(workRoot, 3600_000), 1);
  assert.deepEqual(await readdir(workRoot), ['fresh']);
  assert.equal(await cleanupStaleBuilds(join(root, 'does-not-exist')), 0);
});
