/**
 * Child-process supervision for the launcher and the test runner: start a service in its own
 * process group, wait until it says it is ready, stop it (SIGTERM, then SIGKILL after a grace
 * period) so nothing is left behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, createWriteStream, mkdirSync, readFileSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';

export interface ServiceOptions {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** stdout and stderr of the child are appended here (a file only its owner may read: mode 600, directory 700 when created). */
  readonly logFile: string;
  /** Ready when the child prints a JSON line with `"event":"ready"` on stdout ... */
  readonly readyLine?: boolean;
  /** ... or when a stdout line matches this pattern (programs that are not ours, e.g. redis-server) ... */
  readonly readyPattern?: RegExp;
  /** ... or when this URL answers 2xx. */
  readonly readyUrl?: string;
  readonly timeoutMs?: number;
}

export interface RunningService {
  readonly name: string;
  readonly child: ChildProcess;
  /** The parsed ready line, when `readyLine` was used. */
  readonly ready: Record<string, unknown>;
  stop(graceMs?: number): Promise<number | null>;
}

function tail(file: string, lines = 30): string {
  if (!existsSync(file)) return '';
  return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
}

export async function startService(opts: ServiceOptions): Promise<RunningService> {
  mkdirSync(dirname(opts.logFile), { recursive: true, mode: 0o700 });
  // Logs name clients, hosts and internal errors: not for other users of the machine. The mode
  // only applies when the file is created, so an older, wider file is narrowed too.
  const log = createWriteStream(opts.logFile, { flags: 'a', mode: 0o600 });
  if (existsSync(opts.logFile)) chmodSync(opts.logFile, 0o600);
  const child = spawn(opts.command, [...opts.args], {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env, PU_PARENT_PID: String(process.pid) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // own process group: a terminal Ctrl-C reaches only the supervisor, which stops us in order
  });
  child.stderr?.pipe(log, { end: false });
  let exited = false;
  let exitCode: number | null = null;
  const exitPromise = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = true;
      exitCode = code ?? (signal ? 128 : null);
      resolve(exitCode);
    });
  });
  let readyInfo: Record<string, unknown> = {};
  const readyFromLine = new Promise<void>((resolve) => {
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      log.write(line + '\n');
      if (opts.readyPattern?.test(line)) resolve();
      if (!opts.readyLine) return;
      if (line.startsWith('{') && line.includes('"event":"ready"')) {
        try {
          readyInfo = JSON.parse(line) as Record<string, unknown>;
          resolve();
        } catch {
          /* not our line */
        }
      }
    });
  });
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  const waitUrl = async (): Promise<void> => {
    while (Date.now() < deadline && !exited) {
      try {
        const res = await fetch(opts.readyUrl!, { signal: AbortSignal.timeout(2000) });
        if (res.ok) return;
      } catch {
        /* not yet */
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  const readyWait = opts.readyLine || opts.readyPattern ? readyFromLine : opts.readyUrl ? waitUrl() : Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    readyWait.then(() => 'ready' as const),
    exitPromise.then(() => 'exited' as const),
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    }),
  ]);
  if (timer) clearTimeout(timer);
  const service: RunningService = {
    name: opts.name,
    child,
    ready: readyInfo,
    async stop(graceMs = 20_000) {
      if (exited || child.pid === undefined) return exitCode;
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      const killer = setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          /* gone */
        }
      }, graceMs);
      const code = await exitPromise;
      clearTimeout(killer);
      // Reap anything left in the group (e.g. a grandchild that ignored SIGTERM).
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* group is empty */
      }
      log.end();
      return code;
    },
  };
  if (outcome !== 'ready' || (opts.readyUrl && exited)) {
    await service.stop(2000);
    const why = outcome === 'timeout' ? `did not become ready within ${Math.round(timeoutMs / 1000)} s` : `exited with code ${String(exitCode)} before becoming ready`;
    throw new Error(`${opts.name} ${why}. Last lines of ${opts.logFile}:\n${tail(opts.logFile)}`);
  }
  return service;
}

/**
 * Child processes started by a supervisor get PU_PARENT_PID; if the supervisor dies without
 * stopping them (kill -9), they notice within a second and shut down gracefully.
 */
export function exitWithParent(): void {
  const parent = Number(process.env.PU_PARENT_PID);
  if (!Number.isInteger(parent) || parent <= 1) return;
  const timer = setInterval(() => {
    try {
      process.kill(parent, 0);
    } catch {
      clearInterval(timer);
      process.kill(process.pid, 'SIGTERM');
    }
  }, 1000);
  timer.unref();
}
