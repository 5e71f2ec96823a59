/** Shared fixtures of the load tests: databases, a broker, units in Postgres, paced publishers. */
import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import pg from 'pg';
import { EmqxManagementClient, startEmbeddedBroker, type EmbeddedBroker, type EmbeddedBrokerOptions } from '@pepeunit/emqx-rules';
import { createMigratedTestDatabases, type MigratedTestDatabases } from '@pepeunit/tests/harness';

export const DOMAIN = 'load.test';

export type LoadFixture = MigratedTestDatabases;

export function loadFixture(label: string): Promise<LoadFixture> {
  return createMigratedTestDatabases(label);
}

export interface TestBroker {
  broker: EmbeddedBroker;
  client: EmqxManagementClient;
  close(): Promise<void>;
}

export async function startBroker(options: Partial<EmbeddedBrokerOptions> = {}): Promise<TestBroker> {
  const broker = await startEmbeddedBroker({ apiKeys: [{ key: 'load', secret: 'load-secret' }], mqttPort: 0, apiPort: 0, ...options });
  const client = new EmqxManagementClient({ baseUrl: broker.apiUrl, apiKey: 'load', apiSecret: 'load-secret', maxRetries: 0 });
  return {
    broker,
    client,
    async close() {
      await client.close();
      await broker.close();
    },
  };
}

export async function insertUser(pool: pg.Pool): Promise<string> {
  const uuid = randomUUID();
  await pool.query(
    `INSERT INTO users (uuid, role, status, login, hashed_password, cipher_dynamic_salt, create_datetime)
     VALUES ($1, 'User', 'Verified', $2, 'x', 'x', now())`,
    [uuid, `load_${uuid.slice(0, 8)}`],
  );
  return uuid;
}

export async function insertUnit(pool: pg.Pool, creator: string, nodes: number, repoUuid: string | null = null): Promise<{ unit: string; nodes: string[] }> {
  const unit = randomUUID();
  const client = await pool.connect();
  const nodeUuids: string[] = [];
  try {
    await client.query('BEGIN');
    await client.query(
      `INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit, creator_uuid, repo_uuid)
       VALUES ($1, 'Private', $2, now(), now(), true, $3, $4)`,
      [unit, `unit_${unit.slice(0, 8)}`, creator, repoUuid],
    );
    for (let i = 0; i < nodes; i += 1) {
      const node = randomUUID();
      nodeUuids.push(node);
      await client.query(
        `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, unit_uuid, creator_uuid)
         VALUES ($1, 'Output', 'Private', false, $2, now(), $3, $4)`,
        [node, `out${i}/pepeunit`, unit, creator],
      );
    }
    await client.query('COMMIT');
  } finally {
    client.release();
  }
  return { unit, nodes: nodeUuids };
}

/**
 * Publishes QoS 0 messages on `topic` at `rate` per second on a fixed schedule (message i is due
 * at start + i / rate; late messages are caught up), while connected. `sent` counts messages
 * handed to a connected socket.
 */
export class PacedPublisher {
  sent = 0;
  private timer: NodeJS.Timeout | undefined;
  private started = 0;
  private due = 0;
  readonly client: MqttClient;

  constructor(url: string, clientId: string, private readonly topic: string, private readonly rate: number, reconnectPeriod = 0) {
    this.client = mqtt.connect(url, { clientId, protocolVersion: 4, reconnectPeriod, connectTimeout: 5000, queueQoSZero: false, reconnectOnConnackError: reconnectPeriod > 0 });
    this.client.on('error', () => undefined);
  }

  async connected(): Promise<void> {
    if (this.client.connected) return;
    await new Promise<void>((resolve) => this.client.once('connect', () => resolve()));
  }

  start(): void {
    this.started = Date.now();
    this.due = 0;
    this.timer = setInterval(() => this.tick(), 5);
  }

  private tick(): void {
    const shouldHave = Math.floor(((Date.now() - this.started) * this.rate) / 1000);
    while (this.due < shouldHave) {
      this.due += 1;
      if (this.client.connected) {
        this.client.publish(this.topic, String(this.due));
        this.sent += 1;
      }
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Publishes `count` messages now at QoS 1 (each acknowledged by the broker). */
  async burst(count: number): Promise<void> {
    for (let i = 0; i < count; i += 1) {
      await this.client.publishAsync(this.topic, String(i), { qos: 1 });
      this.sent += 1;
    }
  }

  async end(): Promise<void> {
    this.stop();
    await this.client.endAsync(true);
  }
}
