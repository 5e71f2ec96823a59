import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import fp from 'fastify-plugin';
import backgroundPlugin, { startedComponent } from '../../src/plugins/background/registry.ts';

/** A plain Fastify app with the background registry, two components and a plugin closing after them. */
async function appWithComponents(events: string[]) {
  const app = Fastify();
  await app.register(backgroundPlugin);
  // Registered first: its onClose runs after the components' (hooks run last registered first).
  await app.register(
    fp(
      async (store) => {
        store.addHook('onClose', async () => {
          events.push('store closed');
        });
      },
      { name: 'store' },
    ),
  );
  await app.register(
    fp(
      async (a) => {
        let value: { n: number } | undefined;
        a.decorate('consumerValue', startedComponent('consumerValue', () => value));
        a.background.add({
          name: 'consumer',
          stopOn: 'preClose',
          start() {
            value = { n: 1 };
            events.push('consumer started');
          },
          stop: async () => {
            events.push('consumer stopped');
          },
        });
      },
      { name: 'consumer', dependencies: ['pepeunit-background', 'store'] },
    ),
  );
  await app.register(
    fp(
      async (a) => {
        a.background.add({
          name: 'reconciler',
          start: async () => {
            events.push('reconciler started');
          },
          stop: async () => {
            events.push('reconciler stopped');
          },
        });
      },
      { name: 'reconciler', dependencies: ['pepeunit-background'] },
    ),
  );
  await app.ready();
  return app;
}

test('components start only through app.background.start(), in registration order, once', async () => {
  const events: string[] = [];
  const app = await appWithComponents(events);
  assert.deepEqual(events, []);
  assert.equal(app.background.started, false);
  assert.throws(() => (app as unknown as { consumerValue: unknown }).consumerValue, /before the background components started/);
  await Promise.all([app.background.start(), app.background.start()]);
  assert.deepEqual(events, ['consumer started', 'reconciler started']);
  assert.equal(app.background.started, true);
  assert.deepEqual((app as unknown as { consumerValue: unknown }).consumerValue, { n: 1 });
  await app.close();
  // preClose components first, then the onClose ones before the plugins registered earlier.
  assert.deepEqual(events.slice(2), ['consumer stopped', 'reconciler stopped', 'store closed']);
});

test('components that never started are not stopped', async () => {
  const events: string[] = [];
  const app = await appWithComponents(events);
  await app.close();
  assert.deepEqual(events, ['store closed']);
});
