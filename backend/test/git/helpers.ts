/**
 * Test fixtures for the git layer: real git repositories in a temporary directory, a
 * capturing logger, and a local smart-HTTP git server (git http-backend behind Basic auth).
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { GitLogger } from '../../src/git/index.js';

const execFileAsync = promisify(execFile);

export const GIT_ENV: NodeJS.ProcessEnv = {
  ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^GIT_/i.test(name))),
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_AUTHOR_NAME: 'Test',
  GIT_AUTHOR_EMAIL: 'test@example.org',
  GIT_COMMITTER_NAME: 'Test',
  GIT_COMMITTER_EMAIL: 'test@example.org',
  LC_ALL: 'C',
};

export async function git(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('git', args, { cwd, env: GIT_ENV, maxBuffer: 64 * 1024 * 1024 });
  return stdout.trim();
}

export async function makeTempDir(prefix = 'pu-git-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function removeDir(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}

export const README_V1 = `<p align="center"><img src="logo.png"></p>

[![build](https://img.shields.io/badge/build-ok-green)](https://ci.example.org)

# Fan Regulator

Regulates **fan speed** depending on [temperature](https://example.org/t).
Publishes \`current_temp/pepeunit\`.

## Install
Flash it.
`;

export const TOML_V1 = `[general]
name = "Fan Regulator ds18b20"
description = "Regulates fan speed depending on temperature."
language = "Micropython"
hardware = ["esp32", "ds18b20"]
firmware = [{name = "ESP32_GENERIC.bin", link = "https://example.org/fw.bin"}]
stack = ["pepeunit_micropython_client"]
version = "1.0.0"
license = "AGPL v3 License"
authors = [{name = "Ivan", email = "ivan@example.org"}]

[env_description]
WIFI_SSID = "WiFi network name"
`;

export const SCHEMA_EXAMPLE = {
  input_base_topic: ['update/pepeunit', 'env_update/pepeunit'],
  output_base_topic: ['state/pepeunit', 'log/pepeunit'],
  input_topic: ['set_fan_state/pepeunit'],
  output_topic: ['current_temp/pepeunit'],
};

export interface FixtureRepository {
  /** Bare repository that plays the remote. */
  barePath: string;
  url: string;
  /** Work tree used to create new commits (pushes to `barePath`). */
  workPath: string;
  /** Commits of main, oldest first: c1 (tag v0.0.1), c2 (annotated tag 0.0.2), c3 (no tag). */
  main: { c1: string; c2: string; c3: string };
  /** dev branches off c2 and adds d1 (annotated tag dev-1.0, with broken.json and src/). */
  dev: { d1: string };
}

/**
 * main: c1 ─ c2 ─ c3            tags: v0.0.1 → c1 (lightweight), 0.0.2 and 0.0.10 → c2 (annotated)
 *             └ d1 (dev)        tags: dev-1.0 → d1
 * plus refs/heads/HEAD on the remote, to prove that "HEAD" is excluded from branch lists.
 */
export async function createFixtureRepository(root: string, name = 'remote'): Promise<FixtureRepository> {
  const workPath = join(root, `${name}-work`);
  const barePath = join(root, `${name}.git`);
  await mkdir(workPath, { recursive: true });
  await git(root, 'init', '--bare', '--quiet', '--initial-branch=main', barePath);
  await git(workPath, 'init', '--quiet', '--initial-branch=main');
  await git(workPath, 'remote', 'add', 'origin', barePath);

  const c1 = await commitFiles(
    workPath,
    {
      'README.md': README_V1,
      'pepeunit.toml': TOML_V1,
      'schema_example.json': JSON.stringify(SCHEMA_EXAMPLE, null, 2),
      'env_example.json': JSON.stringify({ WIFI_SSID: '', WIFI_PASS: '' }, null, 2),
      '.pepeignore': 'README.md\n',
    },
    'initial version',
  );
  await git(workPath, 'tag', 'v0.0.1');
  const c2 = await commitFiles(
    workPath,
    { 'env_example.json': JSON.stringify({ WIFI_SSID: '', WIFI_PASS: '', PWM_FAN_PIN: 4 }, null, 2) },
    'add PWM_FAN_PIN',
  );
  await git(workPath, 'tag', '-a', '0.0.2', '-m', 'release 0.0.2');
  await git(workPath, 'tag', '-a', '0.0.10', '-m', 'same commit, higher version');
  await git(workPath, 'checkout', '--quiet', '-b', 'dev');
  const d1 = await commitFiles(
    workPath,
    { 'broken.json': '{"a": 1,', 'src/main.py': 'print("hello")\n', 'src/lib/util.py': 'X = 1\n' },
    'dev work',
  );
  await git(workPath, 'tag', '-a', 'dev-1.0', '-m', 'dev tag');
  await git(workPath, 'checkout', '--quiet', 'main');
  const c3 = await commitFiles(workPath, { 'notes.txt': 'untagged commit\n' }, 'untagged change');
  await git(workPath, 'push', '--quiet', 'origin', 'main', 'dev');
  await git(workPath, 'push', '--quiet', 'origin', '--tags');
  await git(barePath, 'update-ref', 'refs/heads/HEAD', 'refs/heads/main');
  return { barePath, url: `file://${barePath}`, workPath, main: { c1, c2, c3 }, dev: { d1 } };
}

export async function commitFiles(
  workPath: string,
  files: Record<string, string | Buffer>,
  message: string,
): Promise<string> {
  for (const [path, content] of Object.entries(files)) {
    const full = join(workPath, path);
    await mkdir(dirname(full), { recursive: true });
    await writeFile(full, content);
  }
  await git(workPath, 'add', '--all');
  await git(workPath, 'commit', '--quiet', '-m', message);
  return git(workPath, 'rev-parse', 'HEAD');
}

/** Incompressible content, so packs are as big as the data. */
export function randomContent(bytes: number): Buffer {
  return randomBytes(bytes);
}

export interface CapturedLog {
  level: string;
  obj: object;
  msg: string | undefined;
}

export function capturingLogger(): { logger: GitLogger; logs: CapturedLog[] } {
  const logs: CapturedLog[] = [];
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      logs.push({ level, obj, msg });
    };
  return { logger: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') }, logs };
}

export interface GitHttpServer {
  url: string;
  close(): Promise<void>;
  requests: number;
}

/**
 * Smart-HTTP git server: `git http-backend` (CGI) serving every bare repository below
 * `projectRoot`, requiring HTTP Basic auth with the given username and token.
 */
export async function startGitHttpServer(
  projectRoot: string,
  /** Basic credentials every request must carry; none = a public server. */
  auth?: { username: string; patToken: string },
): Promise<GitHttpServer> {
  const expected = auth ? `Basic ${Buffer.from(`${auth.username}:${auth.patToken}`).toString('base64')}` : null;
  const state = { requests: 0 };
  const server: Server = createServer((req, res) => {
    state.requests++;
    if (expected !== null && req.headers.authorization !== expected) {
      req.resume();
      res.writeHead(401, { 'www-authenticate': 'Basic realm="git"', 'content-type': 'text/plain' });
      res.end('Unauthorized');
      return;
    }
    const requestUrl = new URL(req.url ?? '/', 'http://localhost');
    const child = spawn('git', ['http-backend'], {
      env: {
        ...GIT_ENV,
        GIT_PROJECT_ROOT: projectRoot,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: decodeURIComponent(requestUrl.pathname),
        QUERY_STRING: requestUrl.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
        GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
        HTTP_GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
        REMOTE_USER: auth?.username ?? '',
        REMOTE_ADDR: '127.0.0.1',
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    req.pipe(child.stdin);
    let head = Buffer.alloc(0);
    let headersSent = false;
    child.stdout.on('data', (chunk: Buffer) => {
      if (headersSent) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const headerLines = head.subarray(0, end).toString('latin1').split('\r\n');
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10);
        else headers[name] = value;
      }
      res.writeHead(status, headers);
      headersSent = true;
      res.write(head.subarray(end + 4));
    });
    child.on('close', () => {
      if (!headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get requests() {
      return state.requests;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A loopback port with nothing listening on it. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
