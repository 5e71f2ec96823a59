// ESLint rule `pepeunit/route-boundaries` (issue 11): a resource folder under
// backend/src/routes/api/v1/ is imported only by its own files and by the wiring (app.ts).
// Shared building blocks live in backend/src/domain/ (or a component folder such as registry/).
import { dirname, relative, resolve, sep } from 'node:path';

const ROUTES = `backend${sep}src${sep}routes${sep}api${sep}v1${sep}`;
const WIRING = new Set([`backend${sep}src${sep}app.ts`]);

/** The resource folder a path belongs to (`units`, `unit_nodes`, ...), or null outside routes/api/v1. */
function resourceOf(path, root) {
  const rel = relative(root, path);
  if (!rel.startsWith(ROUTES)) return null;
  const rest = rel.slice(ROUTES.length);
  const cut = rest.indexOf(sep);
  return cut === -1 ? null : rest.slice(0, cut);
}

export default {
  meta: {
    type: 'problem',
    docs: { description: 'no imports between backend/src/routes/api/v1/* resource folders' },
    schema: [],
    messages: {
      crossing:
        "'{{source}}' reaches into the '{{target}}' resource from {{from}}; move what is shared to backend/src/domain/ (a resource folder is imported only by its own routes and by app.ts)",
    },
  },
  create(context) {
    const root = context.cwd ?? process.cwd();
    const file = context.filename;
    const fileRel = relative(root, file);
    if (!fileRel.startsWith(`backend${sep}src${sep}`) || WIRING.has(fileRel)) return {};
    const own = resourceOf(file, root);
    function check(node, source) {
      if (typeof source !== 'string' || !source.startsWith('.')) return;
      const target = resourceOf(resolve(dirname(file), source), root);
      if (target !== null && target !== own) {
        context.report({ node, messageId: 'crossing', data: { source, target, from: own === null ? fileRel : `the '${own}' resource` } });
      }
    }
    return {
      ImportDeclaration: (node) => check(node, node.source.value),
      ExportNamedDeclaration: (node) => node.source && check(node, node.source.value),
      ExportAllDeclaration: (node) => check(node, node.source.value),
      ImportExpression: (node) => node.source.type === 'Literal' && check(node, node.source.value),
    };
  },
};
