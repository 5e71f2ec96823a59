/**
 * Minimal child-process runner for the git commands that simple-git cannot serve well:
 * network operations (clone/fetch, which need a hand-built environment, live stderr for
 * progress, a hard deadline and cancellation) and streaming output (`git archive`).
 * Arguments are passed as an array (no shell); callers put user values after `--`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { PassThrough } from 'node:stream';

export interface RunGitOptions {
  cwd?: string;
  env: NodeJS.ProcessEnv;
  /** Hard deadline for the whole command. */
  timeoutMs: number;
  /** Abort from outside (e.g. the size watchdog). */
  signal?: AbortSignal;
  /** Live stderr text (git writes progress there, lines separated by `\r` or `\n`). */
  onStderr?: (text: string) => void;
  gitBinary?: string;
}

export interface RunGitResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  timedOut: boolean;
  aborted: boolean;
}

const MAX_CAPTURED_STDERR = 64 * 1024;
const MAX_CAPTURED_STDOUT = 16 * 1024 * 1024;

export function runGit(args: readonly string[], options: RunGitOptions): Promise<RunGitResult> {
  return new Promise((resolve) => {
    const child = spawn(options.gitBinary ?? 'git', args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      // own process group, so a kill also reaches git's helpers (git-remote-http, index-pack)
      detached: process.platform !== 'win32',
    });
    const stdoutChunks: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = '';
    let timedOut = false;
    let aborted = false;
    let settled = false;

    const kill = (): void => {
      killGroup(child, 'SIGTERM');
      setTimeout(() => killGroup(child, 'SIGKILL'), 2000).unref();
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, options.timeoutMs);
    const onAbort = (): void => {
      aborted = true;
      kill();
    };
    if (options.signal?.aborted) onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });

    child.stdout.on('data', (chunk: Buffer) => {
      if (stdoutBytes < MAX_CAPTURED_STDOUT) stdoutChunks.push(chunk);
      stdoutBytes += chunk.length;
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => {
      stderr = (stderr + text).slice(-MAX_CAPTURED_STDERR);
      options.onStderr?.(text);
    });

    const finish = (code: number | null, spawnError?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      resolve({
        code,
        stdout: Buffer.concat(stdoutChunks),
        stderr: spawnError ? `${stderr}\nfatal: cannot run git: ${spawnError.message}` : stderr,
        timedOut,
        aborted,
      });
    };
    child.on('error', (error) => finish(null, error));
    child.on('close', (code) => finish(code));
    child.on('exit', (code) => {
      // After a kill, do not wait for helpers that might still hold the pipes open.
      if (timedOut || aborted) {
        setTimeout(() => {
          child.stdout.destroy();
          child.stderr.destroy();
          finish(code);
        }, 200).unref();
      }
    });
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    if (process.platform === 'win32') child.kill(signal);
    else process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/**
 * Streams the stdout of a git command. The returned stream ends when git exits with 0 and
 * is destroyed with an error built by `toError(stderr)` otherwise.
 */
export function streamGit(
  args: readonly string[],
  options: { cwd?: string; env: NodeJS.ProcessEnv; timeoutMs: number; gitBinary?: string },
  toError: (stderr: string) => Error,
): Readable {
  const output = new PassThrough();
  const child = spawn(options.gitBinary ?? 'git', args, {
    cwd: options.cwd,
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: process.platform !== 'win32',
  });
  let stderr = '';
  const timer = setTimeout(() => killGroup(child, 'SIGKILL'), options.timeoutMs);
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    stderr = (stderr + text).slice(-MAX_CAPTURED_STDERR);
  });
  child.stdout.pipe(output, { end: false });
  child.on('error', (error) => {
    clearTimeout(timer);
    output.destroy(toError(error.message));
  });
  child.on('close', (code, signal) => {
    clearTimeout(timer);
    if (code === 0) output.end();
    else output.destroy(toError(stderr || `git exited with ${signal ?? code}`));
  });
  // A consumer that stops reading early must not leave git running.
  output.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) killGroup(child, 'SIGKILL');
  });
  return output;
}
