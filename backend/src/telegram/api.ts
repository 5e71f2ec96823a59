/**
 * The Bot API client configuration shared by the bot and the alert sender: grammY's `Api` against
 * PU_TELEGRAM_API_ROOT (Telegram, a local Bot API server, or the stand-in in tests).
 */
import { Api, type ApiClientOptions } from 'grammy';
import type { BackendConfig } from '@pepeunit/common';

export function telegramClientOptions(config: BackendConfig): ApiClientOptions {
  return {
    apiRoot: config.telegram.apiRoot,
    // A hanging request must not hold a chat's send lock for long (grammY's default is 500 s).
    timeoutSeconds: 30,
  };
}

/** Whether the bot (and alert delivery) can run: the feature flag is on and a token is set. */
export function telegramEnabled(config: BackendConfig): boolean {
  return config.featureFlags.telegramBot && config.telegram.token.length > 0;
}

export function createTelegramApi(config: BackendConfig): Api {
  return new Api(config.telegram.token, telegramClientOptions(config));
}
