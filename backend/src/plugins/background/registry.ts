/**
 * Background components (issue 11): reconcilers, consumers and periodic jobs are app plugins
 * (this folder) that hand their component to `app.background`. They start together, in
 * registration order, when runtime.ts calls `app.background.start()`: after the HTTP server
 * listens, the broker is configured (EMQX calls back into this process) and our own MQTT
 * connection started (the broker authenticates it through that callback). An app only built
 * (`buildApp` in tests) never starts them.
 *
 * Each component stops on app close, when it was started: `stopOn: 'preClose'` before the HTTP
 * server and the other plugins close (work that uses their services, buffers flushed while the
 * stores are open), in registration order; `stopOn: 'onClose'` (default) with the plugins'
 * `onClose` hooks (the last registered first).
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';

export interface BackgroundComponent {
  /** For logs and errors. */
  readonly name: string;
  start(): Promise<void> | void;
  stop(): Promise<void>;
  readonly stopOn?: 'preClose' | 'onClose';
}

export interface Background {
  /** Adds a component (while the plugins register). */
  add(component: BackgroundComponent): void;
  /** Starts every component once, in registration order (runtime.ts). */
  start(): Promise<void>;
  /** True once every component started. */
  readonly started: boolean;
}

declare module 'fastify' {
  interface FastifyInstance {
    readonly background: Background;
  }
}

export default fp(
  async (app) => {
    const components: BackgroundComponent[] = [];
    const running = new Set<BackgroundComponent>();
    let starting: Promise<void> | undefined;
    let started = false;
    const background: Background = {
      add(component) {
        components.push(component);
        const stop = async (): Promise<void> => {
          if (running.delete(component)) await component.stop();
        };
        if (component.stopOn === 'preClose') app.addHook('preClose', stop);
        else app.addHook('onClose', stop);
      },
      start() {
        starting ??= (async () => {
          for (const component of components) {
            await component.start();
            running.add(component);
          }
          started = true;
        })();
        return starting;
      },
      get started() {
        return started;
      },
    };
    app.decorate('background', background);
  },
  { name: 'pepeunit-background', dependencies: [] },
);

/** The getter of a component decorator: the component once started, a clear error before. */
export function startedComponent<T>(name: string, get: () => T | undefined): { getter(): T } {
  return {
    getter() {
      const component = get();
      if (component === undefined) throw new Error(`app.${name} is used before the background components started (app.background.start(), runtime.ts)`);
      return component;
    },
  };
}

/**
 * A component made when the background starts and decorated as `app[decorator]` (a getter that
 * throws until then): what every background plugin of this folder does.
 */
export function addStartedComponent<T>(
  app: FastifyInstance,
  decorator: string,
  component: { readonly name: string; readonly stopOn?: 'preClose' | 'onClose'; start(): T | Promise<T>; stop(value: T): Promise<unknown> | void },
): void {
  let value: T | undefined;
  app.decorate<unknown>(decorator, startedComponent<unknown>(decorator, () => value));
  app.background.add({
    name: component.name,
    stopOn: component.stopOn,
    async start() {
      value = await component.start();
    },
    async stop() {
      if (value !== undefined) await component.stop(value);
    },
  });
}
