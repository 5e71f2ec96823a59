// Forward proxy for the systemd-nspawn test host (test/nspawn/README.md): the container has a
// private network (its own loopback, so Debian's default ports do not collide with this
// machine's services); apt and npm inside reach the two registries this machine may use through
// this proxy, listening on a Unix socket bound into the container. Everything else is refused.
//
//   node ansible/test/nspawn/proxy.mjs /run/pu-nspawn-proxy/proxy.sock
import http from 'node:http';
import net from 'node:net';
import { rmSync } from 'node:fs';

const ALLOWED = new Set(['deb.debian.org', 'security.debian.org', 'registry.npmjs.org']);
const socketPath = process.argv[2];
if (!socketPath) throw new Error('usage: proxy.mjs <socket path>');
rmSync(socketPath, { force: true });

const server = http.createServer((req, res) => {
  // Plain HTTP (apt): absolute-form request line.
  let target;
  try {
    target = new URL(req.url);
  } catch {
    res.writeHead(400).end('absolute URL expected\n');
    return;
  }
  if (!ALLOWED.has(target.hostname)) {
    res.writeHead(403).end(`not allowed: ${target.hostname}\n`);
    return;
  }
  const upstream = http.request(
    { host: target.hostname, port: target.port || 80, path: target.pathname + target.search, method: req.method, headers: { ...req.headers, host: target.host } },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    },
  );
  upstream.on('error', (err) => res.writeHead(502).end(`${err.message}\n`));
  req.pipe(upstream);
});

// HTTPS (npm): CONNECT host:443, then a raw tunnel.
server.on('connect', (req, client, head) => {
  const [host, port] = (req.url ?? '').split(':');
  if (!ALLOWED.has(host) || port !== '443') {
    client.end('HTTP/1.1 403 Forbidden\r\n\r\n');
    return;
  }
  const upstream = net.connect(443, host, () => {
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  });
  upstream.on('error', () => client.destroy());
  client.on('error', () => upstream.destroy());
});

server.listen(socketPath, () => process.stdout.write(`proxy listening on ${socketPath}\n`));
