/**
 * Repository URLs are the registry's unique key, so they are normalised before any lookup:
 * lower-case scheme and host, default port dropped, no trailing slash, `.git` suffix added when
 * missing. URLs carrying credentials, a query or a fragment are refused: credentials go in the
 * `credentials` field, where they are encrypted (a URL would be stored and shown in clear).
 */
import { RepositoryRegistryError } from '../errors.js';

const DEFAULT_PORTS: Record<string, string> = { 'http:': '80', 'https:': '443' };

export function normalizeRepositoryUrl(raw: string, allowedProtocols: readonly string[]): string {
  const text = raw.trim();
  const allowed = allowedProtocols.map((p) => `${p}://`).join(' or ');
  const incorrect = `Repo URL is not correct: it must start with ${allowed} and point at a git repository (e.g. https://github.com/owner/name.git)`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new RepositoryRegistryError(incorrect);
  }
  const scheme = url.protocol.replace(/:$/, '').toLowerCase();
  if (!allowedProtocols.includes(scheme)) throw new RepositoryRegistryError(incorrect);
  if (url.username !== '' || url.password !== '') {
    // never echo the URL: it holds a secret
    throw new RepositoryRegistryError('Repo URL must not contain credentials: pass them in the "credentials" field, where they are stored encrypted');
  }
  if (url.search !== '' || url.hash !== '' || text.includes('?') || text.includes('#')) {
    throw new RepositoryRegistryError(`${incorrect}; a query or fragment is not allowed`);
  }
  let path = url.pathname.replace(/\/+$/, '');
  const segments = path.split('/').filter(Boolean);
  const last = segments.at(-1) ?? '';
  if (scheme !== 'file' && segments.length < 2) throw new RepositoryRegistryError(`${incorrect}; the owner and the repository name are missing`);
  if (last === '' || last === '.git') throw new RepositoryRegistryError(incorrect);
  // "name.gitx" is a typo of "name.git", not a repository called "name.gitx.git" (reference test)
  if (/\.git./i.test(last) && !last.endsWith('.git')) throw new RepositoryRegistryError(`${incorrect}; the URL must end with .git`);
  if (!last.endsWith('.git')) path += '.git';
  const port = url.port && url.port !== DEFAULT_PORTS[url.protocol] ? `:${url.port}` : '';
  const host = url.hostname.toLowerCase();
  return `${scheme}://${host}${port}${path}`;
}
