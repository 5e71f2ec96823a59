import '@pepeunit/common/quiet-debug';
import { Session } from 'node:inspector/promises';
import { writeFileSync } from 'node:fs';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
const broker = await startEmbeddedBroker({ apiKeys: [{ key: 'k', secret: 's' }] });
const session = new Session();
session.connect();
let profiling = false;
process.on('SIGUSR2', async () => {
  if (!profiling) { profiling = true; await session.post('Profiler.enable'); await session.post('Profiler.start'); process.stderr.write('profiling\n'); }
  else { const { profile } = await session.post('Profiler.stop'); writeFileSync(process.env.PROF_OUT!, JSON.stringify(profile)); process.stderr.write('written\n'); }
});
process.stdout.write(JSON.stringify({ event: 'ready', mqttUrl: broker.mqttUrl, apiUrl: broker.apiUrl }) + '\n');
process.on('SIGINT', () => void broker.close().then(() => process.exit(0)));
