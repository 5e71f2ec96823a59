/**
 * `pepeunit.toml` -> README Markdown (pepeunit-backend.md §7.8; the section layout documented
 * for unit developers in the reference's docs "pepeunit.toml structure"). Pure: text in, text
 * out, ReadmeGenerationError for anything that is not a usable document.
 *
 * Sections, each only when present: the `general` title and parameter table, `video` (a
 * clickable preview), one heading per `images` key, the `models` table, numbered `files`
 * links, the `physical_io` / `env_description` / `topic_assignment` tables, and the numbered
 * `work_algorithm` / `installation` steps. The text ends with exactly one newline.
 */
import { parse as parseToml } from 'smol-toml';
import { ReadmeGenerationError } from '../../../../errors.js';

export const TOML_MAX_CHARS = 10_000;

const GENERAL_LIMITS: Record<string, number> = { name: 50, description: 400, language: 50, version: 30, license: 50 };
const GENERAL_LIST_MAX_ITEMS = 30;
const GENERAL_LABELS: Record<string, string> = {
  description: 'Description',
  language: 'Lang',
  hardware: 'Hardware',
  firmware: 'Firmware',
  stack: 'Stack',
  version: 'Version',
  license: 'License',
  authors: 'Authors',
};

type Table = Record<string, unknown>;

const isTable = (value: unknown): value is Table => typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
const text = (value: unknown): string => (typeof value === 'string' ? value.trim() : value === undefined || value === null ? '' : String(value));

/** A list item: a backticked word, or `[name](link)` for link objects. */
function listItem(item: unknown): string {
  if (!isTable(item)) return `\`${text(item)}\``;
  const name = text(item.name);
  const link = text(item.link);
  if (name && link) return `[${name}](${link})`;
  if (link) return `[${link}](${link})`;
  if (name) return name;
  return JSON.stringify(item);
}

function author(item: unknown): string | null {
  if (!isTable(item)) return null;
  const name = text(item.name);
  const email = text(item.email);
  if (name && email) return `${name} <${email}>`;
  if (name) return name;
  if (email) return `<${email}>`;
  return null;
}

function generalValue(key: string, value: unknown): string | null {
  if (key === 'hardware' || key === 'firmware' || key === 'stack') {
    return Array.isArray(value) && value.length > 0 ? value.map(listItem).join(', ') : null;
  }
  if (key === 'language') return typeof value === 'string' && value.trim() ? `\`${value.trim()}\`` : null;
  if (key === 'authors') {
    const authors = Array.isArray(value) ? value.map(author).filter((a): a is string => a !== null) : [];
    return authors.length > 0 ? authors.join(', ') : null;
  }
  const rendered = text(value);
  return rendered || null;
}

function validateGeneral(general: Table): void {
  for (const [key, max] of Object.entries(GENERAL_LIMITS)) {
    const value = general[key];
    if (value !== undefined && text(value).length > max) throw new ReadmeGenerationError(`general.${key} is longer than ${max} characters`);
  }
  for (const key of ['hardware', 'firmware', 'stack', 'authors']) {
    const value = general[key];
    if (value !== undefined && !Array.isArray(value)) throw new ReadmeGenerationError(`general.${key} must be a list`);
    if (Array.isArray(value) && value.length > GENERAL_LIST_MAX_ITEMS) throw new ReadmeGenerationError(`general.${key} has more than ${GENERAL_LIST_MAX_ITEMS} items`);
  }
}

function section(lines: string[], heading: string, body: string[]): void {
  if (body.length === 0) return;
  lines.push(heading, '', ...body, '');
}

function keyTable(table: unknown, header: string): string[] {
  if (!isTable(table)) return [];
  const rows = Object.entries(table).map(([key, description]) => `\`${key}\` | ${text(description)}`);
  return rows.length > 0 ? [header, '-- | --', ...rows] : [];
}

function steps(table: unknown): string[] {
  const list = isTable(table) && Array.isArray(table.steps) ? table.steps : [];
  return list.map((step, i) => `${i + 1}. ${text(step)}`);
}

export function pepeunitTomlToMarkdown(source: string): string {
  if (source.length > TOML_MAX_CHARS) throw new ReadmeGenerationError(`pepeunit.toml is longer than ${TOML_MAX_CHARS} characters`);
  let data: Table;
  try {
    data = parseToml(source) as Table;
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new ReadmeGenerationError(`pepeunit.toml is not valid TOML: ${message}`);
  }
  const lines: string[] = [];

  const general = isTable(data.general) ? data.general : {};
  validateGeneral(general);
  const name = text(general.name);
  if (name) lines.push(`# ${name}`, '');
  const parameters = Object.entries(general)
    .filter(([key]) => key !== 'name')
    .map(([key, value]) => [GENERAL_LABELS[key] ?? key, generalValue(key, value)] as const)
    .filter((row): row is readonly [string, string] => row[1] !== null)
    .map(([label, value]) => `${label} | ${value}`);
  if (parameters.length > 0) lines.push('Parameter | Implementation', '-- | --', ...parameters, '');

  const video = isTable(data.video) && isTable(data.video.video) ? data.video.video : null;
  if (video && text(video.link)) {
    section(lines, '## Video', [text(video.preview) ? `[![video](${text(video.preview)})](${text(video.link)})` : `[video](${text(video.link)})`]);
  }

  if (isTable(data.images)) {
    for (const [title, urls] of Object.entries(data.images)) {
      const heading = title.trim();
      if (!heading) continue;
      const images = (Array.isArray(urls) ? urls : [urls]).map((url) => `<div align="center"><img align="center" src="${text(url)}"></div>`);
      section(lines, heading.startsWith('#') ? heading : `## ${heading.charAt(0).toUpperCase()}${heading.slice(1).toLowerCase()}`, images);
    }
  }

  const models = isTable(data.models) && Array.isArray(data.models.models) ? data.models.models.filter(isTable) : [];
  if (models.length > 0) {
    section(lines, '## Models', ['Version | Description | Link', '-- | -- | --', ...models.map((m) => `${text(m.version)} | ${text(m.description)} | ${text(m.link) ? `[${text(m.link).split('/').pop() || 'link'}](${text(m.link)})` : ''}`)]);
  }

  if (isTable(data.files)) {
    const files = Object.entries(data.files)
      .map(([fileName, url]) => [fileName.trim(), text(url)] as const)
      .filter(([, url]) => url)
      .map(([fileName, url], i) => `${i + 1}. [${fileName || url}](${url})`);
    section(lines, '## Files', files);
  }

  section(lines, '## Physical IO', keyTable(data.physical_io, 'IO | Purpose'));
  section(lines, '## Env variable assignment', keyTable(data.env_description, 'Variable | Purpose'));
  section(lines, '## Assignment of Device Topics', keyTable(data.topic_assignment, 'Topic | Purpose'));
  section(lines, '## Work algorithm', steps(data.work_algorithm));
  section(lines, '## Installation', steps(data.installation));

  return lines.join('\n').trimEnd() + '\n';
}
