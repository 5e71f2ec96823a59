// /api/v5/banned — the ban list (EMQX `emqx_mgmt_api_banned`). A `clientid` ban also kicks the
// connected client; every ban is checked at CONNECT.
import type { FastifyPluginAsync } from 'fastify';
import { toRfc3339Seconds } from '../../emqx-values.js';
import type { Ban } from '../../emqx-types.js';
import { ApiError, badRequest, notFound } from '../api-error.js';
import { fingerprint } from '../fingerprint.js';
import type { ManagementContext } from '../http-api.js';
import { BAN_TYPES, checkBan } from '../resources.js';
import type { BanRecord, BanType } from '../resources.js';
import { pageParams, paginate } from './pagination.js';

export function formatBan(ban: BanRecord): Ban {
  return {
    as: ban.as,
    who: ban.who,
    by: ban.by,
    reason: ban.reason,
    at: toRfc3339Seconds(ban.atMs),
    until: ban.untilMs === undefined ? 'infinity' : toRfc3339Seconds(ban.untilMs),
  };
}

const FILTERS: Record<string, (ban: BanRecord, value: string) => boolean> = {
  clientid: (ban, value) => ban.as === 'clientid' && ban.who === value,
  username: (ban, value) => ban.as === 'username' && ban.who === value,
  peerhost: (ban, value) => ban.as === 'peerhost' && ban.who === value,
  like_clientid: (ban, value) => (ban.as === 'clientid' || ban.as === 'clientid_re') && new RegExp(value).test(ban.who),
  like_username: (ban, value) => (ban.as === 'username' || ban.as === 'username_re') && new RegExp(value).test(ban.who),
  like_peerhost: (ban, value) => ban.as === 'peerhost' && new RegExp(value).test(ban.who),
  like_peerhost_net: (ban, value) => ban.as === 'peerhost_net' && new RegExp(value).test(ban.who),
};

export function bannedRoutes(context: ManagementContext): FastifyPluginAsync {
  const { store, sessions } = context;
  return async (app) => {
    app.get('/banned', async (request) => {
      const query = request.query as Record<string, unknown>;
      const { page, limit } = pageParams(query);
      await store.purgeExpiredBans();
      const filters = Object.keys(FILTERS).filter((key) => typeof query[key] === 'string');
      if (filters.length > 1) throw badRequest('too_many_filters');
      let bans = store.config.bans;
      const filter = filters[0];
      if (filter !== undefined) {
        const value = query[filter] as string;
        if (filter.startsWith('like_')) {
          try {
            new RegExp(value);
          } catch {
            throw badRequest(JSON.stringify({ message: 'The filter is not a validation regex expression', filter: value }));
          }
        }
        const test = FILTERS[filter] as (ban: BanRecord, value: string) => boolean;
        bans = bans.filter((ban) => test(ban, value));
      }
      const result = paginate(bans, page, limit);
      return { data: result.data.map(formatBan), meta: result.meta };
    });

    app.post('/banned', async (request) => {
      const now = Date.now();
      const ban = checkBan(request.body, now);
      await store.update(['bans'], (draft) => {
        const existing = draft.bans.find((item) => item.as === ban.as && item.who === ban.who);
        if (existing && (existing.untilMs === undefined || existing.untilMs > now)) {
          throw new ApiError(400, 'ALREADY_EXISTS', JSON.stringify(formatBan(existing)));
        }
        draft.bans = draft.bans.filter((item) => !(item.as === ban.as && item.who === ban.who));
        draft.bans.push(ban);
      });
      // A username is a unit's token: the log gets its fingerprint only.
      const who = ban.as === 'username' || ban.as === 'username_re' ? fingerprint(ban.who) : ban.who;
      context.logger.info({ as: ban.as, who, until: ban.untilMs }, 'ban created');
      if (ban.as === 'clientid') {
        const session = sessions.find(ban.who);
        if (session) context.kick(session);
      }
      return formatBan(ban);
    });

    app.delete<{ Params: { as: string; who: string } }>('/banned/:as/:who', async (request, reply) => {
      const { as, who } = request.params;
      if (!(BAN_TYPES as readonly string[]).includes(as)) {
        throw badRequest(JSON.stringify({ kind: 'validation_error', path: 'as', reason: 'unable_to_convert_to_enum_symbol', value: as }));
      }
      await store.update(['bans'], (draft) => {
        const index = draft.bans.findIndex((item) => item.as === (as as BanType) && item.who === who);
        if (index === -1) throw notFound('NOT_FOUND', `${as}: ${who} not found`);
        draft.bans.splice(index, 1);
      });
      return reply.code(204).send();
    });

    app.delete('/banned', async (_request, reply) => {
      await store.update(['bans'], (draft) => {
        draft.bans = [];
      });
      return reply.code(204).send();
    });
  };
}
