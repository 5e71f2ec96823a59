// /api/v5/listeners, /api/v5/configs/global_zone and /api/v5/mqtt/retainer.
import type { FastifyPluginAsync } from 'fastify';
import { ApiError, badRequest } from '../api-error.js';
import type { ManagementContext } from '../http-api.js';
import { mergeGlobalZoneUpdate, mergeListenerUpdate, mergeRetainerUpdate } from '../resources.js';

const listenerNotFound = () => new ApiError(404, 'BAD_LISTENER_ID', 'Listener id not found');

function portOf(bind: string): string {
  return bind.slice(bind.lastIndexOf(':') + 1);
}

/** "1883" (all interfaces) and "0.0.0.0:1883" name the same bind. */
function sameBind(a: unknown, b: unknown): boolean {
  const left = String(a);
  const right = String(b);
  if (left === right) return true;
  return (!left.includes(':') || !right.includes(':')) && portOf(left) === portOf(right);
}

export function configRoutes(context: ManagementContext): FastifyPluginAsync {
  const { store } = context;
  const listenerView = (id: string, config: Record<string, unknown>): Record<string, unknown> => {
    return { ...config, id, type: id.split(':')[0] };
  };

  return async (app) => {
    app.get('/listeners', async () =>
      Object.entries(store.config.listeners).map(([id, config]) => {
        const [type, name] = id.split(':');
        const status = { running: config.enable !== false, max_connections: config.max_connections, current_connections: context.listenerConnections(id) };
        return { id, type, name, enable: config.enable, bind: config.bind, acceptors: config.acceptors, status, node_status: [{ node: context.nodeName, status }] };
      }),
    );

    app.get<{ Params: { id: string } }>('/listeners/:id', async (request) => {
      const config = store.listener(request.params.id);
      if (!config) throw listenerNotFound();
      return listenerView(request.params.id, config);
    });

    app.put<{ Params: { id: string } }>('/listeners/:id', async (request) => {
      const { id } = request.params;
      const current = store.listener(id);
      if (!current) throw listenerNotFound();
      const merged = mergeListenerUpdate(id, current, request.body);
      if (!sameBind(merged.bind, current.bind)) {
        throw badRequest(
          `The embedded broker cannot move listener ${id} from ${String(current.bind)} to ${String(merged.bind)} while running; restart it with another --mqtt-host/--mqtt-port`,
        );
      }
      await store.update(['listeners'], (draft) => {
        draft.listeners[id] = merged;
      });
      context.logger.info({ listener: id }, 'listener updated');
      return listenerView(id, merged);
    });

    app.get('/configs/global_zone', async () => store.config.zone);

    app.put('/configs/global_zone', async (request) => {
      const merged = mergeGlobalZoneUpdate(store.config.zone, request.body);
      await store.update(['zone'], (draft) => {
        draft.zone = merged;
      });
      context.logger.info('global zone updated');
      return merged;
    });

    app.get('/mqtt/retainer', async () => store.config.retainer);

    app.put('/mqtt/retainer', async (request) => {
      const merged = mergeRetainerUpdate(store.config.retainer, request.body);
      await store.update(['retainer'], (draft) => {
        draft.retainer = merged;
      });
      context.logger.info({ enable: merged.enable }, 'retainer updated');
      return merged;
    });
  };
}
