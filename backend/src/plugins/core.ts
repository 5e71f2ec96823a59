/**
 * The app's ground (issue 11): what every other app plugin reads, decorated from the
 * dependencies runtime.ts (or a test) opened: `app.deps`, `app.config`, `app.pg`,
 * `app.clickhouse`, `app.mqtt`, plus the in-process hubs `app.cipher`, `app.alertSink`
 * (domain/alert-sink.ts) and `app.loadPorts` (domain/load-ports.ts). The decorator types are
 * declared in deps.ts. Registered first; every app plugin lists 'pepeunit-core' in its
 * `dependencies`.
 */
import fp from 'fastify-plugin';
import type { AppDeps } from '../deps.js';
import { Cipher } from '../security/cipher.js';
import { AlertSinkHub } from '../domain/alert-sink.js';
import { LoadPorts } from '../domain/load-ports.js';

export interface CorePluginOptions {
  readonly deps: AppDeps;
}

export default fp<CorePluginOptions>(
  async (app, { deps }) => {
    app.decorate('deps', deps);
    app.decorate('config', deps.config);
    app.decorate('pg', deps.pg);
    app.decorate('clickhouse', deps.clickhouse);
    app.decorate('mqtt', deps.mqtt);
    app.decorate('cipher', new Cipher(deps.config.encryptKey, deps.config.maxCipherLength));
    app.decorate('alertSink', new AlertSinkHub(app.log));
    app.decorate('loadPorts', new LoadPorts());
  },
  { name: 'pepeunit-core' },
);
