/**
 * A local stand-in for the Telegram Bot API (wave2-integrations.md §1.1–§1.5): the documented
 * transport (`POST <root>/bot<token>/<method>`, JSON, form-urlencoded or multipart bodies), the
 * `{ok, result}` / `{ok:false, error_code, description, parameters}` envelope, and the methods the
 * backend uses: getMe, sendMessage, editMessageText, answerCallbackQuery, sendDocument,
 * setWebhook, deleteWebhook, getWebhookInfo, getUpdates (long polling). The real grammY client
 * talks to it through `apiRoot`.
 *
 * It records every call, can answer a method with an error on demand (429 with
 * `parameters.retry_after`, 403 "bot was blocked by the user", ...), and plays the Telegram side of
 * a conversation: `userMessage` / `pressButton` build updates and deliver them like Telegram —
 * POSTed to the webhook (with `X-Telegram-Bot-Api-Secret-Token`) when one is set, else queued for
 * `getUpdates`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedCall {
  readonly method: string;
  readonly params: Record<string, unknown>;
  /** Date.now() when the request arrived. */
  readonly at: number;
  /** The HTTP status answered. */
  readonly status: number;
}

export interface SentMessage {
  readonly messageId: number;
  readonly chatId: number;
  readonly text: string;
  readonly at: number;
  readonly replyMarkup?: unknown;
  readonly parseMode?: string;
}

export interface SentDocument {
  readonly chatId: number;
  readonly fileName: string;
  readonly bytes: Buffer;
  readonly at: number;
}

export interface ScriptedError {
  readonly error_code: number;
  readonly description: string;
  readonly retry_after?: number;
  readonly migrate_to_chat_id?: number;
}

export interface TelegramBotApiOptions {
  /** The bot token the API accepts (others get 401). */
  readonly token?: string;
  readonly username?: string;
  readonly botId?: number;
  /** Chats that blocked the bot: sends to them answer 403. */
  readonly blockedChats?: Iterable<number>;
}

export interface TelegramBotApi {
  /** For grammY `client.apiRoot` (no trailing slash). */
  readonly apiRoot: string;
  readonly token: string;
  readonly botInfo: { id: number; username: string };
  /** Every call in arrival order. */
  readonly calls: RecordedCall[];
  /** Successful sendMessage / editMessageText results (edits replace the text). */
  readonly messages: SentMessage[];
  readonly documents: SentDocument[];
  /** The webhook set by setWebhook ('' when none). */
  webhook(): { url: string; secretToken: string };
  /** Messages sent to one chat, in order. */
  messagesTo(chatId: number): SentMessage[];
  /** Answers the next `times` calls of `method` with this error (429: `retryAfter` seconds). */
  failNext(method: string, error: ScriptedError, times?: number): void;
  /** Delivers a text message from a user (its private chat id = user id) and waits until the bot took it. */
  userMessage(chatId: number, text: string): Promise<void>;
  /** Delivers a callback_query for a button of a message the bot sent. */
  pressButton(chatId: number, messageId: number, data: string): Promise<void>;
  /** Delivers a raw update object (`update_id` is added). */
  deliver(update: Record<string, unknown>): Promise<void>;
  /**
   * The user of a private chat blocks (true) or unblocks (false) the bot, as Telegram reports it:
   * sends to the chat answer 403 while blocked, and a `my_chat_member` update (the bot's status
   * `kicked` or `member`) is delivered.
   */
  setBlocked(chatId: number, blocked: boolean): Promise<void>;
  /** Updates queued for getUpdates and not yet confirmed. */
  pendingUpdates(): number;
  close(): Promise<void>;
}

const OK = (result: unknown) => ({ ok: true, result });

async function readParams(req: http.IncomingMessage, body: Buffer, url: string): Promise<{ params: Record<string, unknown>; files: Map<string, { name: string; bytes: Buffer }> }> {
  const type = String(req.headers['content-type'] ?? '');
  const files = new Map<string, { name: string; bytes: Buffer }>();
  if (body.length === 0) return { params: Object.fromEntries(new URL(url, 'http://x').searchParams), files };
  if (type.startsWith('application/json')) return { params: JSON.parse(body.toString('utf8')) as Record<string, unknown>, files };
  if (type.startsWith('application/x-www-form-urlencoded')) return { params: Object.fromEntries(new URLSearchParams(body.toString('utf8'))), files };
  if (type.startsWith('multipart/form-data')) {
    // A tolerant multipart reader (Telegram accepts grammY's compact `content-disposition:form-data;name="x"`).
    const boundary = /boundary=("?)([^";]+)\1/.exec(type)?.[2];
    if (!boundary) throw new Error('multipart without boundary');
    const params: Record<string, unknown> = {};
    const delimiter = Buffer.from(`--${boundary}`);
    let start = body.indexOf(delimiter);
    while (start >= 0) {
      const partStart = start + delimiter.length;
      if (body.subarray(partStart, partStart + 2).toString() === '--') break;
      const next = body.indexOf(delimiter, partStart);
      if (next < 0) break;
      const part = body.subarray(partStart + 2, next - 2); // skip CRLF after the delimiter and before the next
      const split = part.indexOf('\r\n\r\n');
      const head = part.subarray(0, split).toString('utf8');
      const content = part.subarray(split + 4);
      const name = /name="([^"]*)"/i.exec(head)?.[1];
      const filename = /filename="?([^";\r\n]+)"?/i.exec(head)?.[1];
      if (name !== undefined) {
        if (filename !== undefined) files.set(name, { name: filename, bytes: Buffer.from(content) });
        else params[name] = content.toString('utf8');
      }
      start = next;
    }
    // `attach://<field>` refers to a file part.
    for (const [key, value] of Object.entries(params)) {
      if (typeof value === 'string' && value.startsWith('attach://')) {
        const file = files.get(value.slice('attach://'.length));
        if (file) files.set(key, file);
      }
    }
    return { params, files };
  }
  throw Object.assign(new Error('unsupported content type'), { status: 400 });
}

function numberOf(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return Number(value);
  return undefined;
}

function jsonField(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

export async function startTelegramBotApi(options: TelegramBotApiOptions = {}): Promise<TelegramBotApi> {
  const token = options.token ?? '123456:TEST-token_for-the-stand-in';
  const botId = options.botId ?? (Number(token.split(':')[0]) || 123456);
  const username = options.username ?? 'pepeunit_test_bot';
  const blocked = new Set(options.blockedChats ?? []);
  const calls: RecordedCall[] = [];
  const messages: SentMessage[] = [];
  const documents: SentDocument[] = [];
  const scripted = new Map<string, ScriptedError[]>();
  let webhook = { url: '', secretToken: '' };
  let nextMessageId = 1;
  let nextUpdateId = 1;
  let nextCallbackId = 1;
  const queue: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  /** update_id → resolve, for updates queued for getUpdates (resolved once confirmed by a later offset). */
  const confirmations = new Map<number, () => void>();

  const wake = () => {
    for (const w of [...waiters]) w();
  };

  const chatOf = (chatId: number) => ({ id: chatId, type: chatId < 0 ? 'group' : 'private', ...(chatId > 0 ? { first_name: `user${chatId}` } : { title: `group${chatId}` }) });

  async function handle(method: string, params: Record<string, unknown>, files: Map<string, { name: string; bytes: Buffer }>): Promise<{ status: number; body: unknown }> {
    const err = (status: number, description: string, parameters?: Record<string, unknown>) => ({ status, body: { ok: false, error_code: status, description, ...(parameters ? { parameters } : {}) } });
    const failure = scripted.get(method)?.shift();
    if (failure) {
      const parameters: Record<string, unknown> = {};
      if (failure.retry_after !== undefined) parameters.retry_after = failure.retry_after;
      if (failure.migrate_to_chat_id !== undefined) parameters.migrate_to_chat_id = failure.migrate_to_chat_id;
      return err(failure.error_code, failure.description, Object.keys(parameters).length ? parameters : undefined);
    }
    const chatId = numberOf(params.chat_id);
    switch (method) {
      case 'getme':
        return { status: 200, body: OK({ id: botId, is_bot: true, first_name: 'Pepeunit Test', username, can_join_groups: true, can_read_all_group_messages: false, supports_inline_queries: false }) };
      case 'sendmessage':
      case 'editmessagetext': {
        if (chatId === undefined) return err(400, 'Bad Request: chat_id is empty');
        if (blocked.has(chatId)) return err(403, 'Forbidden: bot was blocked by the user');
        const text = typeof params.text === 'string' ? params.text : '';
        if (text.length === 0) return err(400, 'Bad Request: message text is empty');
        if (text.length > 4096) return err(400, 'Bad Request: message is too long');
        const parseMode = typeof params.parse_mode === 'string' ? params.parse_mode : undefined;
        if (parseMode === 'HTML' && /<(?!\/?(b|strong|i|em|u|ins|s|strike|del|code|pre|a|tg-spoiler|blockquote)\b)[^>]*>/.test(text)) {
          return err(400, "Bad Request: can't parse entities: unsupported start tag");
        }
        const replyMarkup = jsonField(params.reply_markup);
        const now = Math.floor(Date.now() / 1000);
        if (method === 'editmessagetext') {
          const messageId = numberOf(params.message_id);
          const index = messages.findIndex((m) => m.chatId === chatId && m.messageId === messageId);
          if (index < 0) return err(400, 'Bad Request: message to edit not found');
          messages[index] = { ...messages[index]!, text, replyMarkup, parseMode, at: Date.now() };
          return { status: 200, body: OK({ message_id: messageId, date: now, edit_date: now, chat: chatOf(chatId), text, ...(replyMarkup ? { reply_markup: replyMarkup } : {}) }) };
        }
        const message: SentMessage = { messageId: nextMessageId++, chatId, text, at: Date.now(), replyMarkup, parseMode };
        messages.push(message);
        return { status: 200, body: OK({ message_id: message.messageId, date: now, chat: chatOf(chatId), from: { id: botId, is_bot: true, first_name: 'Pepeunit Test', username }, text, ...(replyMarkup ? { reply_markup: replyMarkup } : {}) }) };
      }
      case 'senddocument': {
        if (chatId === undefined) return err(400, 'Bad Request: chat_id is empty');
        if (blocked.has(chatId)) return err(403, 'Forbidden: bot was blocked by the user');
        const file = files.get('document') ?? [...files.values()][0];
        if (!file) return err(400, 'Bad Request: there is no document in the request');
        documents.push({ chatId, fileName: file.name, bytes: file.bytes, at: Date.now() });
        const messageId = nextMessageId++;
        return { status: 200, body: OK({ message_id: messageId, date: Math.floor(Date.now() / 1000), chat: chatOf(chatId), document: { file_id: `doc${messageId}`, file_unique_id: `u${messageId}`, file_name: file.name, file_size: file.bytes.length } }) };
      }
      case 'answercallbackquery':
        if (typeof params.callback_query_id !== 'string') return err(400, 'Bad Request: query is too old and response timeout expired or query ID is invalid');
        return { status: 200, body: OK(true) };
      case 'setwebhook': {
        const url = typeof params.url === 'string' ? params.url : '';
        const secretToken = typeof params.secret_token === 'string' ? params.secret_token : '';
        if (secretToken && !/^[A-Za-z0-9_-]{1,256}$/.test(secretToken)) return err(400, 'Bad Request: secret token contains unallowed characters');
        if (url && !/^https?:\/\//.test(url)) return err(400, 'Bad Request: bad webhook: An HTTPS URL must be provided for webhook');
        webhook = { url, secretToken };
        if (params.drop_pending_updates === true || params.drop_pending_updates === 'true') queue.length = 0;
        return { status: 200, body: OK(true) };
      }
      case 'deletewebhook':
        webhook = { url: '', secretToken: '' };
        if (params.drop_pending_updates === true || params.drop_pending_updates === 'true') queue.length = 0;
        return { status: 200, body: OK(true) };
      case 'getwebhookinfo':
        return { status: 200, body: OK({ url: webhook.url, has_custom_certificate: false, pending_update_count: webhook.url ? 0 : queue.length }) };
      case 'getupdates': {
        if (webhook.url) return err(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first");
        const offset = numberOf(params.offset) ?? 0;
        const timeout = Math.min(numberOf(params.timeout) ?? 0, 50);
        const limit = Math.min(Math.max(numberOf(params.limit) ?? 100, 1), 100);
        // Confirm (drop) updates below the offset, as Telegram does.
        while (queue.length && (queue[0]!.update_id as number) < offset) {
          const confirmed = queue.shift()!;
          confirmations.get(confirmed.update_id as number)?.();
        }
        if (queue.length === 0 && timeout > 0) {
          await new Promise<void>((resolve) => {
            const done = () => {
              clearTimeout(timer);
              waiters.delete(done);
              resolve();
            };
            const timer = setTimeout(done, timeout * 1000);
            waiters.add(done);
          });
        }
        return { status: 200, body: OK(queue.slice(0, limit)) };
      }
      default:
        return err(404, 'Not Found: method not found');
    }
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const url = req.url ?? '/';
        const match = /^\/bot([^/]+)\/([A-Za-z]+)(?:\?.*)?$/.exec(url);
        let status = 404;
        let body: unknown = { ok: false, error_code: 404, description: 'Not Found' };
        let method = '';
        let params: Record<string, unknown> = {};
        try {
          if (match) {
            method = match[2]!.toLowerCase();
            if (match[1] !== token) {
              status = 401;
              body = { ok: false, error_code: 401, description: 'Unauthorized' };
            } else {
              const parsed = await readParams(req, Buffer.concat(chunks), url);
              params = parsed.params;
              ({ status, body } = await handle(method, params, parsed.files));
            }
          }
        } catch (error) {
          status = 400;
          body = { ok: false, error_code: 400, description: `Bad Request: ${(error as Error).message}` };
        }
        if (method) calls.push({ method: match![2]!, params, at: Date.now(), status });
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  async function deliver(update: Record<string, unknown>): Promise<void> {
    const full = { update_id: nextUpdateId++, ...update };
    if (webhook.url) {
      const res = await fetch(webhook.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(webhook.secretToken ? { 'x-telegram-bot-api-secret-token': webhook.secretToken } : {}) },
        body: JSON.stringify(full),
      });
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`webhook answered ${res.status}`);
      return;
    }
    // Long polling: resolved when the bot confirms the update with a later offset.
    const confirmed = new Promise<void>((resolve) => confirmations.set(full.update_id, resolve));
    queue.push(full);
    wake();
    await confirmed;
    confirmations.delete(full.update_id);
  }

  const userOf = (chatId: number) => ({ id: chatId, is_bot: false, first_name: `user${chatId}`, language_code: 'en' });

  return {
    apiRoot: `http://127.0.0.1:${port}`,
    token,
    botInfo: { id: botId, username },
    calls,
    messages,
    documents,
    webhook: () => ({ ...webhook }),
    messagesTo: (chatId) => messages.filter((m) => m.chatId === chatId),
    failNext(method, error, times = 1) {
      const list = scripted.get(method.toLowerCase()) ?? [];
      for (let i = 0; i < times; i++) list.push(error);
      scripted.set(method.toLowerCase(), list);
    },
    userMessage(chatId, text) {
      const entities = text.startsWith('/') ? [{ type: 'bot_command', offset: 0, length: text.split(/\s/)[0]!.length }] : undefined;
      return deliver({
        message: { message_id: nextMessageId++, date: Math.floor(Date.now() / 1000), chat: chatOf(chatId), from: userOf(chatId), text, ...(entities ? { entities } : {}) },
      });
    },
    pressButton(chatId, messageId, data) {
      const message = messages.find((m) => m.chatId === chatId && m.messageId === messageId);
      return deliver({
        callback_query: {
          id: String(nextCallbackId++),
          from: userOf(chatId),
          chat_instance: String(chatId),
          data,
          message: { message_id: messageId, date: Math.floor(Date.now() / 1000), chat: chatOf(chatId), text: message?.text ?? '' },
        },
      });
    },
    deliver,
    setBlocked(chatId, isBlocked) {
      if (isBlocked) blocked.add(chatId);
      else blocked.delete(chatId);
      const bot = { id: botId, is_bot: true, first_name: 'Pepeunit Test', username };
      const member = (status: 'member' | 'kicked') => ({ status, user: bot, ...(status === 'kicked' ? { until_date: 0 } : {}) });
      return deliver({
        my_chat_member: {
          chat: chatOf(chatId),
          from: userOf(chatId),
          date: Math.floor(Date.now() / 1000),
          old_chat_member: member(isBlocked ? 'member' : 'kicked'),
          new_chat_member: member(isBlocked ? 'kicked' : 'member'),
        },
      });
    },
    pendingUpdates: () => queue.length,
    async close() {
      wake();
      for (const resolve of confirmations.values()) resolve();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
