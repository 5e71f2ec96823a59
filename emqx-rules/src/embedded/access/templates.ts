// `${var}` templates as EMQX renders them in HTTP authn/authz requests (reference/emqx-5.md
// §5.1, §5.4). Placeholders outside the allowed set are accepted and rendered as written (EMQX
// logs `auth_template_invalid` and keeps them literal); `${$}` is a literal `$`.

const PLACEHOLDER = /\$\{([^}]*)\}/g;

export const AUTHN_ALLOWED_VARS = [
  'clientid',
  'username',
  'password',
  'peerhost',
  'peerport',
  'cert_subject',
  'cert_common_name',
  'cert_pem',
  'zone',
  'client_attrs.*',
] as const;

export const AUTHZ_ALLOWED_VARS = [
  'clientid',
  'username',
  'peerhost',
  'peerport',
  'proto_name',
  'mountpoint',
  'topic',
  'action',
  'qos',
  'retain',
  'access',
  'zone',
  'cert_subject',
  'cert_common_name',
  'cert_pem',
  'client_attrs.*',
] as const;

export type TemplateVars = Record<string, string | undefined>;

function isAllowed(name: string, allowed: readonly string[]): boolean {
  if (name === '$') return true;
  return allowed.some((entry) => (entry.endsWith('.*') ? name.startsWith(entry.slice(0, -1)) && name.length > entry.length - 1 : entry === name));
}

/** Placeholder names used in a string or (deeply) in an object/array of strings. */
export function placeholdersIn(value: unknown): string[] {
  const found: string[] = [];
  const visit = (item: unknown): void => {
    if (typeof item === 'string') {
      for (const match of item.matchAll(PLACEHOLDER)) found.push(match[1] ?? '');
    } else if (Array.isArray(item)) {
      item.forEach(visit);
    } else if (item && typeof item === 'object') {
      for (const [key, inner] of Object.entries(item)) {
        visit(key);
        visit(inner);
      }
    }
  };
  visit(value);
  return found;
}

export function disallowedPlaceholders(value: unknown, allowed: readonly string[]): string[] {
  return [...new Set(placeholdersIn(value).filter((name) => !isAllowed(name, allowed)))];
}

/** Renders one string; missing allowed variables become "" and disallowed ones stay literal. */
export function renderTemplate(template: string, vars: TemplateVars, allowed: readonly string[], encode?: (value: string) => string): string {
  return template.replace(PLACEHOLDER, (whole, name: string) => {
    if (name === '$') return '$';
    if (!isAllowed(name, allowed)) return whole;
    const value = vars[name] ?? '';
    return encode ? encode(value) : value;
  });
}

/** Renders every string (keys and values) inside a JSON-like value. */
export function renderDeep(value: unknown, vars: TemplateVars, allowed: readonly string[]): unknown {
  if (typeof value === 'string') return renderTemplate(value, vars, allowed);
  if (Array.isArray(value)) return value.map((item) => renderDeep(item, vars, allowed));
  if (value && typeof value === 'object') {
    const result: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) result[renderTemplate(key, vars, allowed)] = renderDeep(inner, vars, allowed);
    return result;
  }
  return value;
}
