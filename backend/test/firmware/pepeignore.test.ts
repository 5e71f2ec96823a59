/**
 * The `.pepeignore` matcher against real git as the oracle: for each pattern set, the files a
 * `git add --all` keeps under that `.gitignore` must equal the files `applyIgnoreRules` keeps.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, rm, writeFile, lstat, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { IgnoreMatcher, applyIgnoreRules } from '../../src/services/firmware/index.ts';

const exec = promisify(execFile);
const GIT_ENV = {
  ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^GIT_/i.test(k))),
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_CONFIG_NOSYSTEM: '1',
  LC_ALL: 'C',
};

const FILES = [
  'README.md',
  'LICENSE',
  'main.py',
  'boot.py',
  'env_example.json',
  'schema_example.json',
  'pepeunit.toml',
  'notes.txt',
  'a.log',
  'docs/guide.md',
  'docs/img/logo.png',
  'docs/img/deep/x.png',
  'lib/util.py',
  'lib/README.md',
  'lib/tests/test_util.py',
  'lib/build/out.bin',
  'src/app/main.py',
  'src/app/build/gen.c',
  'src/app/cache.log',
  'build/root.bin',
  'weird name.txt',
  'file#hash.txt',
  '!bang.txt',
  'trailing ',
  'a[b].txt',
  'x1.c',
  'xa.c',
  'x-.c',
  'deep/a/b/c/target.txt',
  'deep/target.txt',
];

const CASES: Record<string, string> = {
  basic: 'README.md\nLICENSE\npepeunit.toml\n',
  comments_and_blanks: '# a comment\n\n   \nREADME.md\n\\#not-a-comment\n',
  globs: '*.md\n*.log\n?oot.py\n',
  negation: '*.md\n!lib/README.md\n',
  directory_only: 'build/\n',
  anchored: '/build\n/main.py\n',
  middle_slash: 'docs/img\nsrc/app/*.log\n',
  double_star_leading: '**/build\n**/target.txt\n',
  double_star_trailing: 'docs/**\n',
  double_star_middle: 'deep/**/target.txt\nsrc/**/gen.c\n',
  reinclude_inside_excluded_dir: 'docs/\n!docs/guide.md\n',
  reinclude_with_star: 'docs/*\n!docs/guide.md\n',
  escapes: '\\!bang.txt\nfile\\#hash.txt\ntrailing\\ \n',
  char_classes: 'x[0-9].c\nx[!0-9].c\na\\[b\\].txt\n',
  star_only_everything_but: '*\n!*.py\n!*/\n',
  examples_keep_schema: '*_example.json\n!schema_example.json\n.pepeignore\n',
  spaces_in_names: 'weird name.txt\n',
  trailing_unescaped_spaces: 'notes.txt   \n',
  double_star_all: '**\n!main.py\n',
  posix_class: 'x[[:digit:]].c\n',
  double_star_directories_only: 'src/**/\n',
  case_sensitive: 'readme.md\nLICENSE\nMAIN.py\n',
  crlf_line_endings: 'README.md\r\n*.log\r\n',
};

const root = await mkdtemp(join(tmpdir(), 'pu-ignore-'));
after(() => rm(root, { recursive: true, force: true }));

async function makeTree(dir: string, ignore: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const file of FILES) {
    await mkdir(dirname(join(dir, file)), { recursive: true });
    await writeFile(join(dir, file), `content of ${file}\n`);
  }
  await writeFile(join(dir, '.pepeignore'), ignore);
}

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    if (prefix === '' && name === '.git') continue;
    const path = join(dir, name);
    const rel = prefix ? `${prefix}/${name}` : name;
    if ((await lstat(path)).isDirectory()) out.push(...(await listFiles(path, rel)));
    else out.push(rel);
  }
  return out;
}

async function gitKept(dir: string, ignore: string): Promise<string[]> {
  await writeFile(join(dir, '.gitignore'), ignore);
  await exec('git', ['init', '--quiet', dir], { env: GIT_ENV });
  await exec('git', ['add', '--all'], { cwd: dir, env: GIT_ENV });
  const { stdout } = await exec('git', ['ls-files', '-z'], { cwd: dir, env: GIT_ENV });
  return stdout
    .split('\0')
    .filter((name) => name !== '' && name !== '.gitignore')
    .sort();
}

for (const [name, ignore] of Object.entries(CASES)) {
  test(`.pepeignore case "${name}" keeps exactly what git keeps`, async () => {
    const ours = join(root, `${name}-ours`);
    const theirs = join(root, `${name}-git`);
    await makeTree(ours, ignore);
    await makeTree(theirs, ignore);
    const expected = await gitKept(theirs, ignore);
    await applyIgnoreRules(ours, new IgnoreMatcher(ignore));
    const actual = (await listFiles(ours)).filter((file) => file !== '.gitignore');
    assert.deepEqual(actual, expected);
    // sanity: every case excludes something, so a matcher that ignores nothing fails
    assert.ok(actual.length < FILES.length + 1, 'the case excludes at least one path');
  });
}

test('directories emptied by the rules are pruned; untouched empty trees stay consistent', async () => {
  const dir = join(root, 'prune');
  await makeTree(dir, 'docs/img/**\n');
  await applyIgnoreRules(dir, new IgnoreMatcher('docs/img/**\n'));
  const docs = await readdir(join(dir, 'docs'));
  assert.deepEqual(docs, ['guide.md'], 'docs/img is removed once everything inside is excluded');
});

test('matcher: directory-only patterns do not match files; last rule wins', () => {
  const m = new IgnoreMatcher('build/\n*.txt\n!keep.txt\n');
  assert.equal(m.isExcluded('build', true), true);
  assert.equal(m.isExcluded('build', false), false);
  assert.equal(m.isExcluded('a/b/notes.txt', false), true);
  assert.equal(m.isExcluded('a/keep.txt', false), false);
  assert.equal(m.isExcluded('./a/notes.txt', false), true, 'a leading ./ is the same path');
  assert.equal(new IgnoreMatcher('').isExcluded('main.py', false), false);
  assert.equal(new IgnoreMatcher('# main.py\n\n').isExcluded('# main.py', false), false, 'a comment is not a pattern');
  // a lone trailing backslash is an invalid pattern: it matches nothing (git), and is no crash
  assert.equal(new IgnoreMatcher('foo\\').isExcluded('foo', false), false);
});

test('matcher bounds: only the first 2,000 lines count, overlong patterns are dropped', () => {
  assert.equal(new IgnoreMatcher(`${'# filler\n'.repeat(2000)}main.py\n`).isExcluded('main.py', false), false);
  assert.equal(new IgnoreMatcher(`${'# filler\n'.repeat(1999)}main.py\n`).isExcluded('main.py', false), true);
  assert.equal(new IgnoreMatcher(`${'*'.repeat(5000)}\nboot.py\n`).isExcluded('main.py', false), false, 'a 5,000-character pattern is dropped');
  assert.equal(new IgnoreMatcher(`${'*'.repeat(5000)}\nboot.py\n`).isExcluded('boot.py', false), true, 'the lines after it still count');
});
