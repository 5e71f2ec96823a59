/**
 * Instance grades and the load_limit report (issue 14), decorated as `app.grades`:
 *  - `key()`: the instance's Ed25519 key (generated once, instance-key.ts);
 *  - `tokens`: scraper tokens (scraper-tokens.ts);
 *  - `runs`: stored load checks; `startLoadCheck()` runs one in the background;
 *  - `report()`: the signed load_limit report (report.ts) from the latest finished check and the
 *    current plan.
 */
import { ADVISORY_LOCKS } from '@pepeunit/common';
import fp from 'fastify-plugin';
import { backendToken } from '@pepeunit/common';
import { projectInfo } from '../version.js';
import { readPlan } from '../billing/plans.js';
import { loadOrCreateInstanceKey, type InstanceKey } from './instance-key.js';
import { ScraperTokens } from './scraper-tokens.js';
import { GradeRunConflictError, GradeRuns } from './runs.js';

/** Advisory lock held by the replica running a load check ("pugr"). */
const GRADE_LOCK = ADVISORY_LOCKS.gradeLoadCheck;
import { REPORT_FORMAT, signReport, type SignedReport } from './report.js';
import { runLoadCheck, type LoadCheckParameters } from './load-check.js';

export interface Grades {
  key(): Promise<InstanceKey>;
  readonly tokens: ScraperTokens;
  readonly runs: GradeRuns;
  report(): Promise<SignedReport>;
  /** Starts a load check in the background; resolves with its uuid once it is recorded as running. */
  startLoadCheck(parameters: LoadCheckParameters, creatorUuid: string | null): Promise<string>;
  /** The check running in this process, if any (awaited at shutdown). */
  readonly running: Promise<void> | null;
}

declare module 'fastify' {
  interface FastifyInstance {
    readonly grades: Grades;
  }
}

export default fp(
  async (app) => {
    let keyPromise: Promise<InstanceKey> | undefined;
    const key = (): Promise<InstanceKey> => {
      keyPromise ??= loadOrCreateInstanceKey(app.pg, app.cipher).catch((err: unknown) => {
        keyPromise = undefined; // retried on the next request
        throw err;
      });
      return keyPromise;
    };
    const tokens = new ScraperTokens(app.pg);
    const runs = new GradeRuns(app.pg);
    let running: Promise<void> | null = null;
    const abort = new AbortController();

    const grades: Grades = {
      key,
      tokens,
      runs,
      get running() {
        return running;
      },
      async report() {
        const [instanceKey, grade, plan] = await Promise.all([key(), runs.latestGrade(), readPlan(app.pg)]);
        return signReport(
          {
            format: REPORT_FORMAT,
            instance: { domain: app.config.domain, key_id: instanceKey.keyId, public_key: instanceKey.publicKey },
            software: { name: projectInfo.name, version: projectInfo.version },
            generated_at: new Date().toISOString(),
            grade,
            prices: {
              currency: plan.currency,
              billing_period_days: plan.billing_period_days,
              free_mps: Number(plan.free_mps),
              mps_price: plan.mps_price,
              free_aggregation_topics: Number(plan.free_aggregation_topics),
              aggregation_topic_price: plan.aggregation_topic_price,
            },
          },
          instanceKey.privateKey,
        );
      },
      async startLoadCheck(parameters, creatorUuid) {
        // The running check holds an advisory lock for its whole duration, so a replica starting
        // up can tell an abandoned run (lock free) from one another replica is running.
        const lock = await app.pg.connect();
        let run: Awaited<ReturnType<GradeRuns['start']>>;
        try {
          if (!(await lock.query('SELECT pg_try_advisory_lock($1, $2) AS ok', [...GRADE_LOCK])).rows[0].ok) throw new GradeRunConflictError('a load check is already running');
          try {
            run = await runs.start(parameters as unknown as Record<string, unknown>, creatorUuid);
          } catch (err) {
            await lock.query('SELECT pg_advisory_unlock($1, $2)', [...GRADE_LOCK]);
            throw err;
          }
        } catch (err) {
          lock.release();
          throw err;
        }
        const target = {
          mqttUrl: `mqtt://${app.config.mqtt.host}:${app.config.mqtt.port}`,
          username: backendToken(app.config.domain, app.config.secretKey),
          domain: app.config.domain,
        };
        running = (async () => {
          try {
            const outcome = await runLoadCheck(target, parameters, {
              signal: abort.signal,
              log: app.log,
              onIteration: async (body) => {
                await runs.append(run.uuid, body);
              },
            });
            await runs.finish(run.uuid, outcome.stopReason === 'cancelled' ? 'cancelled' : 'finished', outcome.gradeMps, outcome.stopReason);
            app.log.info({ run: run.uuid, grade: outcome.gradeMps, reason: outcome.stopReason }, 'load check finished');
          } catch (err) {
            app.log.error({ err, run: run.uuid }, 'load check failed');
            await runs.finish(run.uuid, 'failed', null, err instanceof Error ? err.message : String(err)).catch(() => {});
          } finally {
            running = null;
            await lock.query('SELECT pg_advisory_unlock($1, $2)', [...GRADE_LOCK]).catch(() => {});
            lock.release();
          }
        })();
        return run.uuid;
      },
    };
    app.decorate('grades', grades);
    app.addHook('onReady', async () => {
      const lock = await app.pg.connect();
      try {
        if (!(await lock.query('SELECT pg_try_advisory_lock($1, $2) AS ok', [...GRADE_LOCK])).rows[0].ok) return; // another replica is running a check
        try {
          const abandoned = await runs.failAbandoned();
          if (abandoned > 0) app.log.warn({ abandoned }, 'load checks left running by a stopped backend were marked failed');
        } finally {
          await lock.query('SELECT pg_advisory_unlock($1, $2)', [...GRADE_LOCK]);
        }
      } finally {
        lock.release();
      }
    });
    app.addHook('onClose', async () => {
      abort.abort();
      await running;
    });
  },
  { name: 'pepeunit-grades', dependencies: ['pepeunit-core'] },
);
