/**
 * One Telegram message from the pending alerts of a chat (HTML parse mode: only `&`, `<`, `>` are
 * escaped). One line per group (unit + level + source/key): the latest text, and when the group
 * holds more than one alert `(+N more since HH:MM)` with the UTC time of its first alert. Groups
 * that do not fit in Telegram's 4096 characters are summed up in a last line, so the counts in a
 * message always add up to the alerts it carries.
 */
export interface AlertGroup {
  readonly source: string;
  readonly level: string;
  readonly unitUuid: string | null;
  readonly unitName: string | null;
  readonly count: number;
  readonly first: Date;
  readonly latestText: string;
}

export function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function hhmm(date: Date): string {
  return `${String(date.getUTCHours()).padStart(2, '0')}:${String(date.getUTCMinutes()).padStart(2, '0')}`;
}

const ICON: Record<string, string> = { Critical: '🛑', Error: '❗', Warning: '⚠️', Info: 'ℹ️', Debug: '🐞' };

/** Telegram's limit is 4096 characters after entity parsing; keep a margin for the tail line. */
const BUDGET = 3900;

/** Rendered length as Telegram counts it (tags do not count, an entity counts as one). */
function renderedLength(html: string): number {
  return html.replace(/<[^>]+>/g, '').replace(/&(amp|lt|gt);/g, '_').length;
}

function subject(group: AlertGroup): string {
  if (group.unitUuid) return `Unit ${escapeHtml(group.unitName ?? group.unitUuid)}`;
  return escapeHtml(group.source);
}

export function formatAlertMessage(groups: readonly AlertGroup[], domain: string): { text: string; count: number } {
  const total = groups.reduce((sum, g) => sum + g.count, 0);
  const sorted = [...groups].sort((a, b) => a.first.getTime() - b.first.getTime());
  const header = `<b>Pepeunit alerts</b> · ${escapeHtml(domain)} · ${total}`;
  const lines: string[] = [header];
  let length = renderedLength(header);
  let restAlerts = 0;
  let restGroups = 0;
  for (const group of sorted) {
    const text = group.latestText.length > 300 ? `${group.latestText.slice(0, 299)}…` : group.latestText;
    const more = group.count > 1 ? ` <i>(+${group.count - 1} more since ${hhmm(group.first)} UTC)</i>` : '';
    const line = `${ICON[group.level] ?? '•'} <b>${subject(group)}</b> · ${escapeHtml(group.level)}: ${escapeHtml(text)}${more}`;
    const lineLength = renderedLength(line) + 1;
    if (length + lineLength > BUDGET) {
      restAlerts += group.count;
      restGroups++;
      continue;
    }
    lines.push(line);
    length += lineLength;
  }
  if (restGroups > 0) lines.push(`<i>+${restAlerts} more alerts in ${restGroups} other groups</i>`);
  return { text: lines.join('\n'), count: total };
}

/**
 * Reads the counts back from a message built by formatAlertMessage (used by tests and the bench):
 * each group line is one alert plus its "+N more", the tail line adds its alerts.
 */
export function countAlertsInMessage(text: string): number {
  let count = 0;
  for (const line of text.split('\n').slice(1)) {
    const tail = /^<i>\+(\d+) more alerts in \d+ other groups<\/i>$/.exec(line);
    if (tail) {
      count += Number(tail[1]);
      continue;
    }
    const more = /\(\+(\d+) more since \d\d:\d\d UTC\)<\/i>$/.exec(line);
    count += 1 + (more ? Number(more[1]) : 0);
  }
  return count;
}
