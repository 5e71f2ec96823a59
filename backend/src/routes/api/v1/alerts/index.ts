/**
 * `/pepeunit/api/v1/alerts` (ours, issue 12): a unit's alert level, the caller's mute windows and
 * alert history. Only the creator of a unit (the recipient of its alerts) sees or changes its
 * settings; a level change reconciles the unit's `alert-log-…` rule in EMQX before answering.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { requireAgent } from '../../../../services/access.js';
import { Nullable, PageOffset, Uuid, UuidParams } from '../../../../schemas/common.js';
import { AlertSettings } from '../../../../alerts/settings.js';

const Level = Type.Union([Type.Literal('Debug'), Type.Literal('Info'), Type.Literal('Warning'), Type.Literal('Error'), Type.Literal('Critical')]);
const State = Type.Union([Type.Literal('pending'), Type.Literal('sent'), Type.Literal('muted'), Type.Literal('no_chat'), Type.Literal('failed')]);

const SettingsRead = Type.Object({ unit_uuid: Uuid, min_level: Nullable(Level), update_datetime: Nullable(Type.String()) });
const SettingsUpdate = Type.Object({ min_level: Nullable(Level) }, { additionalProperties: false });
const MuteRead = Type.Object({ uuid: Uuid, unit_uuid: Nullable(Uuid), starts_at: Type.String(), ends_at: Type.String() });
const MuteCreate = Type.Object({
  unit_uuid: Type.Optional(Nullable(Uuid)),
  starts_at: Type.Optional(Type.String({ format: 'date-time' })),
  ends_at: Type.String({ format: 'date-time' }),
});
const HistoryQuery = Type.Object({
  unit_uuid: Type.Optional(Uuid),
  state: Type.Optional(State),
  offset: Type.Optional(PageOffset),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
});
const HistoryRead = Type.Object({
  count: Type.Integer(),
  alerts: Type.Array(Type.Object({
    id: Type.Integer(),
    source: Type.String(),
    level: Type.String(),
    unit_uuid: Nullable(Type.String()),
    text: Type.String(),
    state: Type.String(),
    create_datetime: Type.String(),
    message_id: Nullable(Type.Integer()),
  })),
});

const alerts: FastifyPluginAsyncTypebox = async (app) => {
  const settings = new AlertSettings(app.pg);
  const tags = ['alerts'];

  app.get('/settings/:uuid', { schema: { tags, params: UuidParams, response: { 200: SettingsRead } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    return settings.get(agent.uuid, request.params.uuid.toLowerCase());
  });

  app.patch('/settings/:uuid', { schema: { tags, params: UuidParams, body: SettingsUpdate, response: { 200: SettingsRead } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    const unit = request.params.uuid.toLowerCase();
    const { settings: result, changed } = await settings.setLevel(agent.uuid, unit, request.body.min_level);
    if (changed) await app.alerts.unitChanged(unit);
    return result;
  });

  app.get('/mute_windows', { schema: { tags, response: { 200: Type.Array(MuteRead) } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    return settings.listMutes(agent.uuid);
  });

  app.post('/mute_windows', { schema: { tags, body: MuteCreate, response: { 201: MuteRead } } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    const body = request.body;
    return reply.status(201).send(await settings.addMute(agent.uuid, { ...body, unit_uuid: body.unit_uuid?.toLowerCase() ?? null }));
  });

  app.delete('/mute_windows/:uuid', { schema: { tags, params: UuidParams } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    await settings.deleteMute(agent.uuid, request.params.uuid);
    return reply.status(204).send();
  });

  app.get('/history', { schema: { tags, querystring: HistoryQuery, response: { 200: HistoryRead } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    return settings.history(agent.uuid, { ...request.query, unit_uuid: request.query.unit_uuid?.toLowerCase() });
  });
};
export default alerts;
