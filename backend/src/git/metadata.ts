/**
 * Search metadata of a repository, extracted at sync time from the default branch:
 * the first heading and paragraph of README.md and the `[general]` table of pepeunit.toml
 * (field set and limits of the reference TOML→Markdown converter, §7.8).
 * Pure functions: never throw on bad input; problems are reported as `warnings`.
 */
import { parse as parseToml } from 'smol-toml';

export interface NamedItem {
  name: string;
  link: string | null;
}

export interface TomlAuthor {
  name: string;
  email: string | null;
}

/** Selected `[general]` fields of pepeunit.toml (missing fields are null / empty lists). */
export interface PepeunitTomlGeneral {
  name: string | null;
  description: string | null;
  language: string | null;
  version: string | null;
  license: string | null;
  hardware: NamedItem[];
  firmware: NamedItem[];
  stack: NamedItem[];
  authors: TomlAuthor[];
}

export interface RepositoryMetadata {
  /** `general.name`, else the README heading. */
  title: string | null;
  /** `general.description`, else the first README paragraph. */
  description: string | null;
  readmeHeading: string | null;
  readmeParagraph: string | null;
  toml: PepeunitTomlGeneral;
  /** Human-readable notes about what could not be used (malformed TOML, over-long fields...). */
  warnings: string[];
}

/** Same limits as the reference converter (§7.8). */
export const TOML_LIMITS = {
  maxCharacters: 10_000,
  name: 50,
  description: 400,
  language: 50,
  version: 30,
  license: 50,
  maxListItems: 30,
} as const;

const MAX_README_CHARACTERS = 256 * 1024;
const MAX_TOML_CHARACTERS = 1024 * 1024;
const MAX_PARAGRAPH_CHARACTERS = 1000;
const MAX_HEADING_CHARACTERS = 200;

type StringField = 'name' | 'description' | 'language' | 'version' | 'license';
type ListField = 'hardware' | 'firmware' | 'stack';
const STRING_FIELDS: readonly StringField[] = ['name', 'description', 'language', 'version', 'license'];
const LIST_FIELDS: readonly ListField[] = ['hardware', 'firmware', 'stack'];

export function emptyTomlGeneral(): PepeunitTomlGeneral {
  return {
    name: null,
    description: null,
    language: null,
    version: null,
    license: null,
    hardware: [],
    firmware: [],
    stack: [],
    authors: [],
  };
}

export function extractRepositoryMetadata(readme: string | null, pepeunitToml: string | null): RepositoryMetadata {
  const warnings: string[] = [];
  const { heading, paragraph } = readme === null ? { heading: null, paragraph: null } : parseReadmeSummary(readme);
  let toml = emptyTomlGeneral();
  if (pepeunitToml !== null) {
    const parsed = parsePepeunitTomlGeneral(pepeunitToml);
    toml = parsed.general;
    warnings.push(...parsed.warnings);
  }
  return {
    title: toml.name ?? heading,
    description: toml.description ?? paragraph,
    readmeHeading: heading,
    readmeParagraph: paragraph,
    toml,
    warnings,
  };
}

// ---------------------------------------------------------------------------------------------
// README.md

/** First heading and first prose paragraph of a Markdown document, as plain text. */
export function parseReadmeSummary(markdown: string): { heading: string | null; paragraph: string | null } {
  const lines = markdown
    .slice(0, MAX_README_CHARACTERS)
    .replace(/^\uFEFF/, '')
    .replace(/\r\n?/g, '\n')
    .split('\n');
  let index = 0;
  // YAML front matter
  if (lines[0]?.trim() === '---') {
    const end = lines.findIndex((line, i) => i > 0 && (line.trim() === '---' || line.trim() === '...'));
    if (end > 0) index = end + 1;
  }

  let heading: string | null = null;
  let paragraph: string | null = null;
  let fence: string | null = null;
  let inComment = false;
  let block: string[] = [];

  const flushBlock = (): void => {
    if (block.length > 0 && paragraph === null) {
      const text = truncate(inlineToPlainText(block.join(' ')), MAX_PARAGRAPH_CHARACTERS);
      if (text.length > 0) paragraph = text;
    }
    block = [];
  };

  for (; index < lines.length && paragraph === null; index++) {
    const line = lines[index] ?? '';
    const trimmed = line.trim();
    if (fence !== null) {
      if (trimmed.startsWith(fence)) fence = null;
      continue;
    }
    if (inComment) {
      if (trimmed.includes('-->')) inComment = false;
      continue;
    }
    const fenceMatch = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (fenceMatch) {
      flushBlock();
      fence = fenceMatch[1] ?? '```';
      continue;
    }
    if (trimmed.startsWith('<!--')) {
      flushBlock();
      if (!trimmed.includes('-->')) inComment = true;
      continue;
    }
    if (trimmed === '') {
      flushBlock();
      continue;
    }
    const atx = /^ {0,3}#{1,6}(?:\s+(.*?))?(?:\s+#+)?\s*$/.exec(line);
    const html = /^<h[1-6][^>]*>(.*?)<\/h[1-6]>\s*$/i.exec(trimmed);
    if (atx || html) {
      flushBlock();
      if (heading === null) heading = nonEmpty(truncate(inlineToPlainText((atx ? atx[1] : html?.[1]) ?? ''), MAX_HEADING_CHARACTERS));
      continue;
    }
    const next = lines[index + 1] ?? '';
    if (block.length === 0 && /^ {0,3}(=+|-+)\s*$/.test(next) && !isSkippedLine(trimmed)) {
      // setext heading: "Title\n=====" or "Title\n-----"
      if (heading === null) heading = nonEmpty(truncate(inlineToPlainText(trimmed), MAX_HEADING_CHARACTERS));
      index++;
      continue;
    }
    if (isSkippedLine(trimmed)) {
      flushBlock();
      continue;
    }
    block.push(trimmed);
  }
  flushBlock();
  return { heading, paragraph };
}

/** Lines that never start prose: tables, lists, quotes, rules, raw HTML and badge-only lines. */
function isSkippedLine(trimmed: string): boolean {
  if (/^(\||[-*+]\s|\d+[.)]\s|>|<)/.test(trimmed)) return true;
  if (/^([-*_])(\s*\1){2,}$/.test(trimmed)) return true;
  // a line made only of images / image links (badges)
  const withoutImages = trimmed
    .replace(/\[!\[[^\]]*\]\([^)]*\)\]\([^)]*\)/g, '')
    .replace(/!\[[^\]]*\]\([^)]*\)/g, '')
    .replace(/!\[[^\]]*\]\[[^\]]*\]/g, '');
  return withoutImages.trim() === '' && trimmed !== '';
}

function inlineToPlainText(text: string): string {
  return text
    .replace(/!\[[^\]]*\]\([^)]*\)/g, '')
    .replace(/!\[[^\]]*\]\[[^\]]*\]/g, '')
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/\[([^\]]*)\]\[[^\]]*\]/g, '$1')
    .replace(/<(https?:\/\/[^>\s]+)>/g, '$1')
    .replace(/<\/?[A-Za-z][^>]*>/g, '')
    .replace(/(\*\*|__)(.+?)\1/g, '$2')
    .replace(/(^|[\s(])\*(\S(?:.*?\S)?)\*(?=[\s).,;:!?]|$)/g, '$1$2')
    .replace(/`+([^`]*)`+/g, '$1')
    .replace(/\s+/g, ' ')
    .trim();
}

// ---------------------------------------------------------------------------------------------
// pepeunit.toml

/**
 * Reads the `[general]` table. Malformed TOML: the `[general]` section is parsed alone, then
 * key by key, so every well-formed field is still returned, with a warning naming the problem.
 */
export function parsePepeunitTomlGeneral(text: string): { general: PepeunitTomlGeneral; warnings: string[] } {
  const warnings: string[] = [];
  if (text.length > TOML_LIMITS.maxCharacters) {
    warnings.push(`pepeunit.toml has ${text.length} characters, more than the limit of ${TOML_LIMITS.maxCharacters}`);
  }
  const source = text.slice(0, MAX_TOML_CHARACTERS).replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n');

  let general: Record<string, unknown> | null = null;
  try {
    const document = parseToml(source) as Record<string, unknown>;
    if (document.general === undefined) {
      warnings.push('pepeunit.toml has no [general] table');
      general = {};
    } else if (!isPlainObject(document.general)) {
      warnings.push('pepeunit.toml: "general" must be a table');
      general = {};
    } else {
      general = document.general;
    }
  } catch (error) {
    warnings.push(`pepeunit.toml is not valid TOML: ${firstLine(errorMessage(error))}`);
    general = recoverGeneralTable(source, warnings);
  }
  return { general: normalizeGeneral(general, warnings), warnings };
}

function recoverGeneralTable(source: string, warnings: string[]): Record<string, unknown> {
  const lines = source.split('\n');
  const start = lines.findIndex((line) => /^\s*\[\s*general\s*\]\s*(#.*)?$/.test(line));
  if (start < 0) {
    warnings.push('pepeunit.toml: no [general] table found');
    return {};
  }
  let end = lines.length;
  for (let i = start + 1; i < lines.length; i++) {
    if (/^\s*\[/.test(lines[i] ?? '') && /^\s*\[{1,2}\s*[A-Za-z0-9_."' -]+\s*\]{1,2}\s*(#.*)?$/.test(lines[i] ?? '')) {
      end = i;
      break;
    }
  }
  const sectionLines = lines.slice(start + 1, end);
  try {
    return parseToml(sectionLines.join('\n')) as Record<string, unknown>;
  } catch {
    // fall through to key-by-key recovery
  }
  const result: Record<string, unknown> = {};
  const keyLine = /^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*=/;
  let chunk: string[] = [];
  let chunkKey: string | null = null;
  const flush = (): void => {
    if (chunkKey === null) return;
    try {
      Object.assign(result, parseToml(chunk.join('\n')));
    } catch (error) {
      warnings.push(`pepeunit.toml: general.${chunkKey} ignored: ${firstLine(errorMessage(error))}`);
    }
    chunk = [];
    chunkKey = null;
  };
  for (const line of sectionLines) {
    const match = keyLine.exec(line);
    if (match) {
      flush();
      chunkKey = (match[1] ?? '').replace(/^["']|["']$/g, '');
    }
    if (chunkKey !== null) chunk.push(line);
  }
  flush();
  return result;
}

function normalizeGeneral(raw: Record<string, unknown>, warnings: string[]): PepeunitTomlGeneral {
  const general = emptyTomlGeneral();
  for (const field of STRING_FIELDS) {
    const value = raw[field];
    if (value === undefined) continue;
    let text: string | null = null;
    if (typeof value === 'string') text = value.trim();
    else if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') text = String(value);
    else warnings.push(`pepeunit.toml: general.${field} must be a string`);
    if (text === null || text === '') continue;
    const limit = TOML_LIMITS[field];
    if (text.length > limit) {
      warnings.push(`pepeunit.toml: general.${field} is longer than ${limit} characters and was truncated`);
      text = text.slice(0, limit);
    }
    general[field] = text;
  }
  for (const field of LIST_FIELDS) {
    general[field] = normalizeList(raw[field], field, warnings, toNamedItem);
  }
  general.authors = normalizeList(raw.authors, 'authors', warnings, toAuthor);
  return general;
}

function normalizeList<T>(
  value: unknown,
  field: string,
  warnings: string[],
  convert: (item: unknown) => T | null,
): T[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    warnings.push(`pepeunit.toml: general.${field} must be a list`);
    return [];
  }
  let items = value;
  if (items.length > TOML_LIMITS.maxListItems) {
    warnings.push(`pepeunit.toml: general.${field} has more than ${TOML_LIMITS.maxListItems} items; the rest were ignored`);
    items = items.slice(0, TOML_LIMITS.maxListItems);
  }
  const result: T[] = [];
  let skipped = 0;
  for (const item of items) {
    const converted = convert(item);
    if (converted === null) skipped++;
    else result.push(converted);
  }
  if (skipped > 0) warnings.push(`pepeunit.toml: ${skipped} item(s) of general.${field} ignored (unexpected format)`);
  return result;
}

function toNamedItem(item: unknown): NamedItem | null {
  if (typeof item === 'string' && item.trim() !== '') return { name: item.trim(), link: null };
  if (isPlainObject(item) && typeof item.name === 'string' && item.name.trim() !== '') {
    return { name: item.name.trim(), link: typeof item.link === 'string' && item.link !== '' ? item.link : null };
  }
  return null;
}

function toAuthor(item: unknown): TomlAuthor | null {
  if (typeof item === 'string' && item.trim() !== '') {
    const match = /^(.*?)\s*<([^>]+)>\s*$/.exec(item.trim());
    return match ? { name: match[1] ?? '', email: match[2] ?? null } : { name: item.trim(), email: null };
  }
  if (isPlainObject(item) && typeof item.name === 'string' && item.name.trim() !== '') {
    return { name: item.name.trim(), email: typeof item.email === 'string' && item.email !== '' ? item.email : null };
  }
  return null;
}

// ---------------------------------------------------------------------------------------------

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1).trimEnd()}…` : text;
}

function nonEmpty(text: string): string | null {
  return text === '' ? null : text;
}
