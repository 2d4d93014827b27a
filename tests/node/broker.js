// A `strata` process for one test: free 127.0.0.1 port, data in a fresh temp dir,
// restartable on the same port and data. The binary comes from $STRATA_TEST_BINARY
// (set by test.sh), else target/debug/strata under the repository root.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const START_TIMEOUT_MS = 30000;
const STOP_TIMEOUT_MS = 20000;

function binary() {
  const p = process.env.STRATA_TEST_BINARY || path.join('target', 'debug', 'strata');
  return path.isAbsolute(p) ? p : path.join(REPO_ROOT, p);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.once('connect', () => { sock.destroy(); resolve(true); });
    sock.once('error', () => resolve(false));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `predicate` (sync or async) until truthy; fails naming `what` after `timeoutMs`. */
async function waitUntil(predicate, what, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await predicate();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

class Broker {
  constructor(overrides = {}) {
    this.overrides = overrides;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-node-'));
    this.proc = null;
    this.port = null;
    this.starts = 0;
  }

  get bootstrap() {
    return `127.0.0.1:${this.port}`;
  }

  async start() {
    if (this.port === null) this.port = await freePort();
    const args = [
      '--override', `listeners=PLAINTEXT://127.0.0.1:${this.port}`,
      '--override', `log.dirs=${path.join(this.dir, 'data')}`,
    ];
    for (const [k, v] of Object.entries(this.overrides)) args.push('--override', `${k}=${v}`);
    this.starts += 1;
    this.logPath = path.join(this.dir, `strata-${this.starts}.log`);
    const log = fs.openSync(this.logPath, 'w');
    // STRATA_* variables are broker config to strata; the test's own must not leak in.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('STRATA_')));
    this.proc = spawn(binary(), args, { stdio: ['ignore', 'ignore', log], env: { ...env, RUST_LOG: 'info' } });
    fs.closeSync(log);
    let exited = null;
    this.proc.once('exit', (code) => { exited = code; });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await canConnect(this.port))) {
      if (exited !== null) throw new Error(`strata exited with ${exited} during start-up:\n${this.logTail()}`);
      if (Date.now() > deadline) throw new Error(`strata did not listen within ${START_TIMEOUT_MS} ms:\n${this.logTail()}`);
      await sleep(20);
    }
    return this;
  }

  /** SIGTERM and wait for the exit; returns the exit code. */
  async stop() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return proc && proc.exitCode;
    const exited = new Promise((r) => proc.once('exit', (code) => r(code)));
    proc.kill('SIGTERM');
    const timer = sleep(STOP_TIMEOUT_MS).then(() => 'timeout');
    const code = await Promise.race([exited, timer]);
    if (code === 'timeout') {
      proc.kill('SIGKILL');
      throw new Error(`strata did not stop within ${STOP_TIMEOUT_MS} ms of SIGTERM`);
    }
    return code;
  }

  logTail(lines = 25) {
    try {
      return fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  async destroy() {
    try { await this.stop(); } finally { fs.rmSync(this.dir, { recursive: true, force: true }); }
  }
}

module.exports = { Broker, binary, freePort, sleep, waitUntil };
