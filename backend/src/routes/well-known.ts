/** `/.well-known/pepeunit-instance-key`: the public key that signs this instance's load_limit reports (also under PU_APP_PREFIX). */
import type { FastifyPluginAsync } from 'fastify';

const wellKnown: FastifyPluginAsync = async (app) => {
  for (const path of ['/.well-known/pepeunit-instance-key', `${app.config.appPrefix}/.well-known/pepeunit-instance-key`]) {
    app.get(path, { schema: { tags: ['instance'], summary: 'Instance public key (Ed25519)' } }, async () => {
      const key = await app.grades.key();
      return { algorithm: key.algorithm, key_id: key.keyId, public_key: key.publicKey, domain: app.config.domain, created_at: key.createdAt };
    });
  }
};
export default wellKnown;
