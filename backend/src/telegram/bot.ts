/**
 * The Pepeunit Telegram bot (grammY; pepeunit-backend.md §9): `/start` (with a verification code:
 * account binding), `/help`, `/info`, `/unit` (list → detail → commands, env and firmware archives
 * for the creator, the unit's alert level), `/repo`, `/registry`, with pagination, visibility and
 * "mine" toggles and search. Identity: the chat id bound through /start; the bot then acts as that
 * user through the REST API (rest.ts), so every access rule applies unchanged.
 *
 * Middleware is composable: `PepeunitBot.use(composer)` adds a grammY Composer after the core
 * commands (payments, more commands), before the final error handler. Session data (list filters,
 * page, a pending search) lives in Redis or Postgres (sessions.ts), never only in this process.
 */
import { Bot, Composer, InlineKeyboard, InputFile, session, type Context, type SessionFlavor, type StorageAdapter } from 'grammy';
import type { FastifyInstance } from 'fastify';
import { TelegramBinding } from './binding.js';
import { BotUserError, RestAsUser } from './rest.js';
import { telegramClientOptions } from './api.js';
import { escapeHtml } from '../alerts/format.js';
import { setChatBlocked } from '../alerts/sender.js';
import { projectInfo } from '../version.js';

export type Entity = 'Unit' | 'Repo' | 'Registry';
const VISIBILITIES = ['Public', 'Internal', 'Private'] as const;
type Visibility = (typeof VISIBILITIES)[number];

export interface ListState {
  page: number;
  mine: boolean;
  visibility: Visibility[];
  search?: string;
  /** Units of one repo (from a repo's "Units" button). */
  repoUuid?: string;
}

export interface BotSession {
  lists?: Partial<Record<Entity, ListState>>;
  /** The next text message is the search string of this list. */
  searchFor?: Entity;
}

export interface BotUser {
  uuid: string;
  role: string;
  status: string;
  login: string;
}

export type BotContext = Context & SessionFlavor<BotSession> & { pepeunit: { user: BotUser | null; rest: RestAsUser | null } };

export interface PepeunitBot {
  readonly bot: Bot<BotContext>;
  readonly binding: TelegramBinding;
  /** Adds middleware after the core commands (e.g. Telegram Stars payments). */
  use(...middleware: Array<Composer<BotContext>>): void;
  /** Webhook mode: runs the periodic getWebhookInfo check now (sets the webhook again when missing). */
  checkWebhook?: () => Promise<void>;
}

export const BOT_COMMANDS = [
  { command: 'unit', description: 'Units' },
  { command: 'repo', description: 'Repos' },
  { command: 'registry', description: 'Repository registry' },
  { command: 'info', description: 'Instance stats' },
  { command: 'help', description: 'Help' },
] as const;

/** Updates the bot asks Telegram for. */
export const ALLOWED_UPDATES = ['message', 'callback_query', 'my_chat_member', 'pre_checkout_query'] as const;

const UNIT_COMMANDS: Record<string, string> = {
  'update/pepeunit': 'Update',
  'schema_update/pepeunit': 'SchemaUpdate',
  'env_update/pepeunit': 'EnvUpdate',
  'log_sync/pepeunit': 'LogSync',
};
const ALERT_CYCLE = [null, 'Critical', 'Error', 'Warning', 'Info', 'Debug'] as const;
const UUID = '[0-9a-fA-F-]{36}';

function pre(rows: Array<[string, string]>): string {
  const width = Math.max(...rows.map(([k]) => k.length));
  return `<pre>${rows.map(([k, v]) => `${escapeHtml(k.padEnd(width))}  ${escapeHtml(v)}`).join('\n')}</pre>`;
}

function shorten(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, Math.max(1, max - 1))}…` : text;
}

function humanBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB'];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${value.toFixed(i ? 1 : 0)} ${units[i]}`;
}

interface UnitItem {
  uuid: string;
  name: string;
  visibility_level: string;
  creator_uuid: string | null;
  repo_uuid: string | null;
  is_auto_update_from_repo_unit: boolean;
  current_commit_version: string | null;
  firmware_update_status: string | null;
  firmware_update_error: string | null;
  last_firmware_update_datetime: string | null;
  last_update_datetime: string;
  unit_state: Record<string, unknown> | null;
  unit_nodes?: unknown[];
}
interface RepoItem {
  uuid: string;
  name: string;
  visibility_level: string;
  creator_uuid: string | null;
  default_branch: string | null;
  default_commit: string | null;
  is_auto_update_repo: boolean;
  is_only_tag_update: boolean;
  is_compilable_repo: boolean;
  repository_registry_uuid: string;
}
interface RegistryItem {
  uuid: string;
  platform: string;
  repository_url: string;
  is_public_repository: boolean;
  sync_status: string | null;
  sync_error: string | null;
  last_sync_datetime: string | null;
  local_repository_size: number;
  creator_uuid: string | null;
}

export interface CreateBotOptions {
  storage: StorageAdapter<BotSession>;
}

export function createPepeunitBot(app: FastifyInstance, opts: CreateBotOptions): PepeunitBot {
  const { config } = app;
  const tg = config.telegram;
  const bot = new Bot<BotContext>(tg.token, { client: telegramClientOptions(config) });
  const binding = new TelegramBinding(app.pg, tg.verificationCodeTtl);
  const pageSize = tg.itemsPerPage;
  const nameLength = tg.headerEntityLength;
  const hashLength = tg.gitHashLength;
  const link = config.links.link;

  bot.use(session({ initial: (): BotSession => ({}), storage: opts.storage, getSessionKey: (ctx) => (ctx.chat?.id ?? ctx.from?.id)?.toString() }));
  bot.use(async (ctx, next) => {
    // A message from a chat means it does not block the bot (any more): Telegram unblocks a bot
    // the user writes to, and the my_chat_member update of that may have been missed.
    if (ctx.message && ctx.chat) {
      await setChatBlocked(app.pg, ctx.chat.id, null).catch((error: unknown) => app.log.warn({ err: error, chat: ctx.chat?.id }, 'clearing the blocked mark of a chat failed'));
    }
    const chatId = ctx.chat?.type === 'private' || !ctx.chat ? (ctx.from?.id ?? ctx.chat?.id) : ctx.chat.id;
    const user = chatId === undefined ? null : await binding.userOfChat(chatId);
    const usable = user && user.status !== 'Blocked' ? user : null;
    ctx.pepeunit = { user: usable, rest: usable ? new RestAsUser(app, usable.uuid) : null };
    await next();
  });

  const requireUser = (ctx: BotContext): { user: BotUser; rest: RestAsUser } => {
    if (!ctx.pepeunit.user || !ctx.pepeunit.rest) throw new BotUserError('403: 1: No Access: User not found', 403);
    return { user: ctx.pepeunit.user, rest: ctx.pepeunit.rest };
  };

  const listState = (ctx: BotContext, entity: Entity): ListState => {
    ctx.session.lists ??= {};
    return (ctx.session.lists[entity] ??= { page: 0, mine: false, visibility: [...VISIBILITIES] });
  };

  /** Shows a screen: edits the message of a pressed button, else sends a new one. */
  const show = async (ctx: BotContext, text: string, keyboard?: InlineKeyboard): Promise<void> => {
    const extra = { parse_mode: 'HTML' as const, link_preview_options: { is_disabled: true }, ...(keyboard ? { reply_markup: keyboard } : {}) };
    if (ctx.callbackQuery?.message) {
      try {
        await ctx.editMessageText(text, extra);
        return;
      } catch (error) {
        if (!(error instanceof Error) || !/message is not modified/.test(error.message)) throw error;
        return;
      }
    }
    await ctx.reply(text, extra);
  };

  // ---- /start, /help, /info ---------------------------------------------------------------
  const helpText = (): string => {
    const rows: Array<[string, string]> = [['/start', 'Start / bind account'], ...BOT_COMMANDS.map((c) => [`/${c.command}`, c.description] as [string, string])];
    return `<b>Pepeunit</b> ${escapeHtml(projectInfo.version)} · ${escapeHtml(config.domain)}\n${pre(rows)}`;
  };
  const helpKeyboard = (): InlineKeyboard => {
    const kb = new InlineKeyboard().url('Frontend', link).url('Documentation', 'https://pepeunit.com').row().url('Swagger', `${config.links.linkPrefix}/docs`);
    if (config.featureFlags.grafana) kb.url('Grafana', `${link}/grafana`);
    return kb;
  };

  const core = new Composer<BotContext>();
  core.command('start', async (ctx) => {
    const code = ctx.match.trim();
    if (!code) {
      await ctx.reply(helpText(), { parse_mode: 'HTML', reply_markup: helpKeyboard() });
      return;
    }
    const chatId = ctx.chat.id;
    if (await binding.userOfChat(chatId)) {
      await ctx.reply(`Your account is already linked to an account on instance ${config.domain}`);
      return;
    }
    const outcome = await binding.consume(code, chatId);
    if (outcome.status === 'invalid') throw new BotUserError('422: 2: Validation Error: Verification code is invalid or expired');
    if (outcome.status === 'chat_taken') throw new BotUserError('422: 3: User Validation Error: This Telegram User is already verified');
    await ctx.reply('You have been successfully verified');
  });
  core.command('help', async (ctx) => {
    await ctx.reply(helpText(), { parse_mode: 'HTML', reply_markup: helpKeyboard() });
  });
  core.command('info', async (ctx) => {
    const { rest } = requireUser(ctx);
    const m = await rest.get<Record<string, number>>('/metrics/');
    await ctx.reply(
      `<b>Instance Stats</b>\n${pre([
        ['Users', String(m.user_count)],
        ['Registry', String(m.repository_registry_count)],
        ['Repos', String(m.repo_count)],
        ['Units', String(m.unit_count)],
        ['UnitNodes', String(m.unit_node_count)],
        ['Edges', String(m.unit_node_edge_count)],
      ])}`,
      { parse_mode: 'HTML' },
    );
  });

  // ---- lists -------------------------------------------------------------------------------
  interface Page<T> {
    count: number;
    items: T[];
  }
  /** Paging, newest first, "mine" and search: the query every list sends. */
  const pageQuery = (user: BotUser, state: ListState) => ({
    offset: state.page * pageSize,
    limit: pageSize,
    order_by_create_date: 'desc',
    ...(state.mine ? { creator_uuid: user.uuid } : {}),
    ...(state.search ? { search_string: state.search } : {}),
  });
  const fetchers: Record<Entity, (rest: RestAsUser, user: BotUser, state: ListState) => Promise<Page<{ uuid: string; label: string }>>> = {
    Unit: async (rest, user, state) => {
      const r = await rest.get<{ count: number; units: UnitItem[] }>('/units', {
        ...pageQuery(user, state),
        visibility_level: state.visibility,
        ...(state.repoUuid ? { repo_uuid: state.repoUuid } : {}),
      });
      return { count: r.count, items: r.units.map((u) => ({ uuid: u.uuid, label: shorten(u.name, nameLength) })) };
    },
    Repo: async (rest, user, state) => {
      const r = await rest.get<{ count: number; repos: RepoItem[] }>('/repos', {
        ...pageQuery(user, state),
        visibility_level: state.visibility,
      });
      return { count: r.count, items: r.repos.map((u) => ({ uuid: u.uuid, label: shorten(u.name, nameLength) })) };
    },
    Registry: async (rest, user, state) => {
      const r = await rest.get<{ count: number; repositories_registry: RegistryItem[] }>('/repository_registry', {
        ...pageQuery(user, state),
        ...(state.visibility.length === 1 ? { is_public_repository: state.visibility[0] === 'Public' } : {}),
      });
      return {
        count: r.count,
        items: (r.repositories_registry ?? []).map((g) => ({ uuid: g.uuid, label: `${g.platform} - ${shorten(g.repository_url.replace(/^https?:\/\//, ''), nameLength * 2)}` })),
      };
    },
  };
  const TITLES: Record<Entity, string> = { Unit: 'Units', Repo: 'Repos', Registry: 'Registry' };

  const showList = async (ctx: BotContext, entity: Entity): Promise<void> => {
    const { user, rest } = requireUser(ctx);
    const state = listState(ctx, entity);
    let page = await fetchers[entity](rest, user, state);
    const pages = Math.max(1, Math.ceil(page.count / pageSize));
    if (state.page >= pages) {
      state.page = pages - 1;
      page = await fetchers[entity](rest, user, state);
    }
    const kb = new InlineKeyboard();
    for (const item of page.items) kb.text(item.label, `${entity}_uuid_${item.uuid}_${state.page}`).row();
    kb.text('◀', `${entity}_prev_page`).text(`${state.page + 1}/${pages}`, 'noop').text('▶', `${entity}_next_page`).row();
    kb.text(`${state.mine ? '✅' : '⬜'} Mine`, `${entity}_toggle_mine`);
    const toggles = entity === 'Registry' ? (['Public', 'Private'] as const) : VISIBILITIES;
    for (const v of toggles) kb.text(`${state.visibility.includes(v) ? '✅' : '⬜'} ${v}`, `${entity}_toggle_${v}`);
    kb.row().text('🔍 Search', `${entity}_search`);
    const filters = [state.search ? `search "${escapeHtml(state.search)}"` : '', state.repoUuid ? 'of one repo' : ''].filter(Boolean).join(', ');
    await show(ctx, `<b>${TITLES[entity]}</b> · ${page.count}${filters ? ` · ${filters}` : ''}`, kb);
  };

  const startList = (entity: Entity) => async (ctx: BotContext) => {
    const state = listState(ctx, entity);
    state.page = 0;
    delete state.search;
    if (entity === 'Unit') delete state.repoUuid;
    await showList(ctx, entity);
  };
  core.command('unit', startList('Unit'));
  core.command('repo', startList('Repo'));
  core.command('registry', startList('Registry'));

  const entityRe = '(Unit|Repo|Registry)';
  core.callbackQuery(new RegExp(`^${entityRe}_(prev_page|next_page|back)$`), async (ctx) => {
    const entity = ctx.match[1] as Entity;
    const state = listState(ctx, entity);
    if (ctx.match[2] === 'prev_page') state.page = Math.max(0, state.page - 1);
    if (ctx.match[2] === 'next_page') state.page += 1;
    await ctx.answerCallbackQuery();
    await showList(ctx, entity);
  });
  core.callbackQuery(new RegExp(`^${entityRe}_toggle_(mine|Public|Internal|Private)$`), async (ctx) => {
    const entity = ctx.match[1] as Entity;
    const state = listState(ctx, entity);
    const what = ctx.match[2]!;
    if (what === 'mine') state.mine = !state.mine;
    else {
      const v = what as Visibility;
      state.visibility = state.visibility.includes(v) ? state.visibility.filter((x) => x !== v) : [...state.visibility, v];
      if (state.visibility.length === 0) state.visibility = [...VISIBILITIES];
    }
    state.page = 0;
    await ctx.answerCallbackQuery();
    await showList(ctx, entity);
  });
  core.callbackQuery(new RegExp(`^${entityRe}_search$`), async (ctx) => {
    ctx.session.searchFor = ctx.match[1] as Entity;
    await ctx.answerCallbackQuery();
    await ctx.reply('Send the search text');
  });
  core.callbackQuery('noop', (ctx) => ctx.answerCallbackQuery());
  core.on('message:text', async (ctx, next) => {
    const entity = ctx.session.searchFor;
    if (!entity || ctx.message.text.startsWith('/')) return next();
    delete ctx.session.searchFor;
    const state = listState(ctx, entity);
    state.search = ctx.message.text.slice(0, 256);
    state.page = 0;
    await showList(ctx, entity);
  });

  // ---- details -----------------------------------------------------------------------------
  const unitDetail = async (ctx: BotContext, uuid: string, page: number): Promise<void> => {
    const { user, rest } = requireUser(ctx);
    const unit = await rest.get<UnitItem>(`/units/${uuid}`);
    const creator = unit.creator_uuid === user.uuid;
    let target: string | null = null;
    try {
      target = (await rest.get<{ commit: string }>(`/units/get_target_version/${uuid}`)).commit;
    } catch {
      target = null;
    }
    const current = unit.current_commit_version;
    const status = unit.firmware_update_status ?? (!current || !target ? 'No Data' : current === target ? 'Success' : 'Need');
    const rows: Array<[string, string]> = [
      ['Name', unit.name],
      ['Visibility', unit.visibility_level],
      ['Auto update', unit.is_auto_update_from_repo_unit ? 'yes' : 'no'],
      ['Current', current ? current.slice(0, hashLength) : '-'],
      ['Target', target ? target.slice(0, hashLength) : '-'],
      ['Update', status],
    ];
    if (unit.firmware_update_error) rows.push(['Update error', shorten(unit.firmware_update_error, 60)]);
    let alertLevel: string | null = null;
    if (creator) {
      alertLevel = (await rest.get<{ min_level: string | null }>(`/alerts/settings/${uuid}`)).min_level;
      rows.push(['Alerts', alertLevel ? `${alertLevel} and above` : 'off']);
    }
    const state = unit.unit_state as Record<string, unknown> | null;
    let stateText = '';
    if (state && typeof state === 'object') {
      const s: Array<[string, string]> = [];
      const ifconfig = Array.isArray(state.ifconfig) ? state.ifconfig.map(String) : [];
      if (ifconfig.length) s.push(['IP/Sub/Gate/DNS', ifconfig.join(' ')]);
      if (typeof state.freq === 'number') s.push(['Freq', `${Math.round(state.freq / 1e6)} MHz`]);
      if (typeof state.millis === 'number') s.push(['Uptime', `${Math.round(state.millis / 1000)} s`]);
      if (typeof state.mem_alloc === 'number') s.push(['RAM alloc', humanBytes(state.mem_alloc)]);
      if (typeof state.mem_free === 'number') s.push(['RAM free', humanBytes(state.mem_free)]);
      if (Array.isArray(state.statvfs) && state.statvfs.length >= 4) {
        const [bsize, , blocks, bfree] = state.statvfs.map(Number) as [number, number, number, number];
        s.push(['Flash total', humanBytes(bsize * blocks)], ['Flash free', humanBytes(bsize * bfree)], ['Flash used', humanBytes(bsize * (blocks - bfree))]);
      }
      if (s.length) stateText = `\n<b>State</b>\n${pre(s)}`;
    }
    const kb = new InlineKeyboard();
    if (creator) {
      let commands = Object.values(UNIT_COMMANDS);
      try {
        const schema = await rest.get<{ input_base_topic?: Record<string, unknown> | string[] }>(`/units/get_current_schema/${uuid}`);
        const topics = Array.isArray(schema.input_base_topic) ? schema.input_base_topic : Object.keys(schema.input_base_topic ?? {});
        commands = topics.map((t) => UNIT_COMMANDS[t]).filter((c): c is string => Boolean(c));
      } catch {
        // no schema yet: offer the standard commands (the REST call checks them)
      }
      for (const command of commands) kb.text(command, `Unit_decres_${command}_${uuid}`);
      kb.row().text('Get Env', `Unit_env_${uuid}`).text('Tgz', `Unit_arch_tgz_${uuid}`).text('Tar', `Unit_arch_tar_${uuid}`).text('Zip', `Unit_arch_zip_${uuid}`).row();
      const next = ALERT_CYCLE[(ALERT_CYCLE.indexOf((alertLevel ?? null) as (typeof ALERT_CYCLE)[number]) + 1) % ALERT_CYCLE.length];
      kb.text(`🔔 Alerts → ${next ?? 'off'}`, `Unit_alert_${next ?? 'Off'}_${uuid}`).row();
    }
    if (unit.repo_uuid) kb.text('Repo', `Repo_uuid_${unit.repo_uuid}_0`);
    kb.row().text('Back', 'Unit_back').text('Refresh', `Unit_uuid_${uuid}_${page}`).url('Browser', `${link}/unit/${uuid}`);
    await show(ctx, `<b>Unit</b>\n${pre(rows)}${stateText}`, kb);
  };

  const repoDetail = async (ctx: BotContext, uuid: string, page: number): Promise<void> => {
    const { user, rest } = requireUser(ctx);
    const repo = await rest.get<RepoItem>(`/repos/${uuid}`);
    const rows: Array<[string, string]> = [
      ['Name', repo.name],
      ['Visibility', repo.visibility_level],
      ['Branch', repo.default_branch ?? '-'],
      ['Commit', repo.default_commit ? repo.default_commit.slice(0, hashLength) : '-'],
      ['Compilable', repo.is_compilable_repo ? 'yes' : 'no'],
      ['Auto update', repo.is_auto_update_repo ? 'yes' : 'no'],
      ['Tags only', repo.is_only_tag_update ? 'yes' : 'no'],
    ];
    const kb = new InlineKeyboard();
    if (repo.creator_uuid === user.uuid) kb.text('Update Related Unit', `Repo_decres_Update_${uuid}`).row();
    kb.text('Registry', `Registry_uuid_${repo.repository_registry_uuid}_0`).text('Units', `Unit_repo_${uuid}`).row();
    kb.text('Back', 'Repo_back').text('Refresh', `Repo_uuid_${uuid}_${page}`).url('Browser', `${link}/repo/${uuid}`);
    await show(ctx, `<b>Repo</b>\n${pre(rows)}`, kb);
  };

  const registryDetail = async (ctx: BotContext, uuid: string, page: number): Promise<void> => {
    const { rest } = requireUser(ctx);
    const g = await rest.get<RegistryItem>(`/repository_registry/${uuid}`);
    const rows: Array<[string, string]> = [
      ['Platform', g.platform],
      ['URL', g.repository_url],
      ['Public', g.is_public_repository ? 'yes' : 'no'],
      ['Sync', g.sync_status ?? '-'],
      ['Synced at', g.last_sync_datetime ?? '-'],
      ['Local size', humanBytes(Number(g.local_repository_size) || 0)],
    ];
    if (g.sync_error) rows.push(['Sync error', shorten(g.sync_error, 60)]);
    const kb = new InlineKeyboard().text('Update Local Registry', `Registry_decres_Update_${uuid}`).row();
    kb.text('Back', 'Registry_back').text('Refresh', `Registry_uuid_${uuid}_${page}`).url('Browser', `${link}/registry/${uuid}`);
    await show(ctx, `<b>Registry</b>\n${pre(rows)}`, kb);
  };

  core.callbackQuery(new RegExp(`^${entityRe}_uuid_(${UUID})_(\\d{1,6})$`), async (ctx) => {
    const entity = ctx.match[1] as Entity;
    const uuid = ctx.match[2]!.toLowerCase();
    const page = Number(ctx.match[3]);
    await ctx.answerCallbackQuery();
    if (entity === 'Unit') await unitDetail(ctx, uuid, page);
    else if (entity === 'Repo') await repoDetail(ctx, uuid, page);
    else await registryDetail(ctx, uuid, page);
  });
  core.callbackQuery(new RegExp(`^Unit_repo_(${UUID})$`), async (ctx) => {
    const state = listState(ctx, 'Unit');
    state.repoUuid = ctx.match[1]!.toLowerCase();
    state.page = 0;
    await ctx.answerCallbackQuery();
    await showList(ctx, 'Unit');
  });
  core.callbackQuery(new RegExp(`^Unit_decres_(Update|SchemaUpdate|EnvUpdate|LogSync)_(${UUID})$`), async (ctx) => {
    const { rest } = requireUser(ctx);
    await rest.post(`/units/send_command_to_input_base_topic/${ctx.match[2]!.toLowerCase()}`, { command: ctx.match[1]! });
    await ctx.answerCallbackQuery({ text: `Command ${ctx.match[1]} sent` });
  });
  core.callbackQuery(new RegExp(`^Repo_decres_Update_(${UUID})$`), async (ctx) => {
    const { rest } = requireUser(ctx);
    await rest.patch(`/repos/update_units_firmware/${ctx.match[1]!.toLowerCase()}`, {});
    await ctx.answerCallbackQuery({ text: 'Update of related units requested' });
  });
  core.callbackQuery(new RegExp(`^Registry_decres_Update_(${UUID})$`), async (ctx) => {
    const { rest } = requireUser(ctx);
    await rest.patch(`/repository_registry/update_local_repository/${ctx.match[1]!.toLowerCase()}`, {});
    await ctx.answerCallbackQuery({ text: 'Local registry update requested' });
  });
  core.callbackQuery(new RegExp(`^Unit_env_(${UUID})$`), async (ctx) => {
    const { rest } = requireUser(ctx);
    const env = await rest.get<Record<string, unknown>>(`/units/env/${ctx.match[1]!.toLowerCase()}`);
    await ctx.answerCallbackQuery();
    const json = JSON.stringify(env, null, 2);
    if (json.length < 3500) await ctx.reply(`<pre>${escapeHtml(json)}</pre>`, { parse_mode: 'HTML' });
    else await ctx.replyWithDocument(new InputFile(Buffer.from(json), 'env.json'));
  });
  core.callbackQuery(new RegExp(`^Unit_arch_(tgz|tar|zip)_(${UUID})$`), async (ctx) => {
    const { rest } = requireUser(ctx);
    const format = ctx.match[1]!;
    const uuid = ctx.match[2]!.toLowerCase();
    const bytes = await rest.getBytes(`/units/firmware/${format}/${uuid}`);
    await ctx.answerCallbackQuery();
    await ctx.replyWithDocument(new InputFile(bytes, `${uuid}.${format}`));
  });
  core.callbackQuery(new RegExp(`^Unit_alert_(Off|Critical|Error|Warning|Info|Debug)_(${UUID})$`), async (ctx) => {
    const { rest } = requireUser(ctx);
    const uuid = ctx.match[2]!.toLowerCase();
    const level = ctx.match[1] === 'Off' ? null : ctx.match[1]!;
    await rest.patch(`/alerts/settings/${uuid}`, { min_level: level });
    await ctx.answerCallbackQuery({ text: level ? `Alerts from ${level}` : 'Alerts off' });
    const page = listState(ctx, 'Unit').page;
    await unitDetail(ctx, uuid, page);
  });

  // A user who blocks the bot stops getting alerts until they unblock it or write to it again
  // (reference §1.6 hardening): no message is tried and refused meanwhile (docs/ALERTS.md).
  core.on('my_chat_member', async (ctx) => {
    const status = ctx.myChatMember.new_chat_member.status;
    if (status === 'kicked' || status === 'left') {
      await setChatBlocked(app.pg, ctx.chat.id, `the chat removed the bot (my_chat_member: ${status})`);
      app.log.info({ chat: ctx.chat.id, status }, 'a chat blocked the bot: no alert messages to it until it unblocks the bot');
    } else if (status === 'member' || status === 'administrator') {
      await setChatBlocked(app.pg, ctx.chat.id, null);
    }
  });

  bot.use(core);
  const extensions = new Composer<BotContext>();
  bot.use(extensions);

  bot.catch(async (err) => {
    const ctx = err.ctx;
    const error = err.error;
    const text = error instanceof BotUserError ? error.message : 'Internal error';
    if (!(error instanceof BotUserError)) app.log.error({ err: error, update: ctx.update.update_id }, 'Telegram bot handler failed');
    try {
      if (ctx.callbackQuery) await ctx.answerCallbackQuery({ text: text.slice(0, 190), show_alert: true });
      else if (ctx.chat) await ctx.reply(text);
    } catch (replyError) {
      app.log.warn({ err: replyError }, 'bot error reply failed');
    }
  });

  return {
    bot,
    binding,
    use(...middleware) {
      for (const m of middleware) extensions.use(m);
    },
  };
}
