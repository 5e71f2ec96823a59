import type { Pool } from 'pg';
import type { ClickHouseClient } from '@clickhouse/client';
import type { MqttClient } from 'mqtt';
import type { BackendConfig, Logger } from '@pepeunit/common';
import type { MqttConnectionStatus } from '@pepeunit/common/mqtt-connection';
import type { Cipher } from './security/cipher.js';
import type { BrokerSessions } from './services/broker-sessions.js';
import type { AlertSinkHub } from './domain/alert-sink.js';
import type { LoadPorts } from './domain/load-ports.js';
import type { AlertsPluginOptions } from './alerts/plugin.js';
import type { EmqxManagementClient } from '@pepeunit/emqx-rules';
import type { EmqxControl } from './services/emqx-control.js';

/** Everything the app needs from the outside world; built by runtime.ts (or the test harness). */
export interface AppDeps {
  readonly config: BackendConfig;
  readonly logger: Logger;
  readonly pg: Pool;
  readonly clickhouse: ClickHouseClient;
  /** The backend's MQTT connection (username = Backend JWT). */
  readonly mqtt: MqttClient;
  /** Why the MQTT connection is down and since when (readiness); absent in tests that pass a bare client. */
  readonly mqttStatus?: () => MqttConnectionStatus;
  /** Cuts live MQTT sessions when access is removed (kicks through the broker's management API). */
  readonly brokerSessions?: BrokerSessions;
  /** Clears the broker's per-client authorization cache (EMQX `DELETE /api/v5/authorization/cache`). */
  readonly clearBrokerAuthzCache?: () => Promise<void>;
  /** Alerts module options (benchmarks replace the Telegram transport). */
  readonly alerts?: AlertsPluginOptions;
  /** The broker's management API (null until configured); present = run the load sampler and counting rules (issue 13). */
  readonly emqxClient?: () => EmqxManagementClient | null;
  /** The broker configuration runtime.ts applies (null until the server listens); present = re-apply after a reconnection. */
  readonly brokerControl?: () => EmqxControl | null;
}

/** Decorated by plugins/core.ts. */
declare module 'fastify' {
  interface FastifyInstance {
    readonly deps: AppDeps;
    readonly config: BackendConfig;
    readonly pg: Pool;
    readonly clickhouse: ClickHouseClient;
    readonly mqtt: MqttClient;
    readonly cipher: Cipher;
    /** Raise alerts for users and the admin (domain/alert-sink.ts). */
    readonly alertSink: AlertSinkHub;
    /** Limits and usage shared by load (issue 13) and billing (issue 14) (domain/load-ports.ts). */
    readonly loadPorts: LoadPorts;
  }
}
