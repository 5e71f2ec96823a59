import { performance } from 'node:perf_hooks';
import { startRegistryBackend } from './registry-test-kit.js';
import { commitFiles, createFixtureRepository, git, makeTempDir, randomContent, removeDir } from '../git/helpers.js';
const root = await makeTempDir();
const fan = await createFixtureRepository(root, 'fan');
const t = await startRegistryBackend('measure');
const u = await t.user('alice_meas');
const reg = await t.call('POST', '/repository_registry', { token: u.token, body: { platform: 'Gitlab', repository_url: fan.url, is_public_repository: true } });
const repoRes = await t.call('POST', '/repos', { token: u.token, body: { repository_registry_uuid: reg.body.uuid, default_branch: 'main', visibility_level: 'Public', name: 'meas_repo' } });
const repo = await t.backend.app.repos.get(repoRes.body.uuid);
const expected = new Map([[fan.main.c1, '{\n  "WIFI_SSID": "",\n  "WIFI_PASS": ""\n}'], [fan.main.c2, '{\n  "WIFI_SSID": "",\n  "WIFI_PASS": "",\n  "PWM_FAN_PIN": 4\n}']]);
const commits = [...expected.keys()];
const pct = (a: number[], p: number) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]!.toFixed(0); };
async function round(n: number) { const lat: number[] = []; let bad = 0; await Promise.all(Array.from({ length: n }, async (_, i) => { const c = commits[i % 2]!; const s = performance.now(); try { const b = await t.backend.app.repos.readFile(repo, c, 'env_example.json'); if (b?.toString() !== expected.get(c)) bad++; } catch { bad++; } lat.push(performance.now() - s); })); return { lat, bad }; }
// idle
let all: number[] = []; for (let r = 0; r < 10; r++) all.push(...(await round(20)).lat);
console.log(`idle 10x20: p50 ${pct(all, 0.5)} ms p95 ${pct(all, 0.95)} ms`);
let s = performance.now(); const big = await round(200); console.log(`idle 200 concurrent: ${(performance.now() - s).toFixed(0)} ms total, bad ${big.bad}`);
// during sync
const files: Record<string, Buffer> = {}; for (let i = 0; i < 24; i++) files[`b${i}.bin`] = randomContent(1024 * 1024);
await commitFiles(fan.workPath, files, 'big'); await git(fan.workPath, 'push', '--quiet', 'origin', 'main');
s = performance.now(); let done = false; const p = t.call('PATCH', `/repository_registry/update_local_repository/${reg.body.uuid}`, { token: u.token }).finally(() => { done = true; });
all = []; let bad = 0; let reads = 0; let statusCalls = 0; let progressSeen = 0;
while (!done) { const r = await round(20); if (!done) { all.push(...r.lat); bad += r.bad; reads += 20; const st = await t.call('GET', `/repository_registry/sync_status/${reg.body.uuid}`); statusCalls++; if (st.body.progress) progressSeen++; } }
const res = await p; const dur = performance.now() - s;
console.log(`sync ${res.status} took ${dur.toFixed(0)} ms; reads during sync ${reads}, bad ${bad}, p50 ${pct(all, 0.5)} ms, p95 ${pct(all, 0.95)}, max ${pct(all, 1)} ms; status calls ${statusCalls} with progress ${progressSeen}`);
await t.close(); await removeDir(root);
