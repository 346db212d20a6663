'use strict';
// What every scenario uses: the client factory (config from the command line), step()
// printing one JSON line per step, polling, and the shapes of keys and ranges.
const fs = require('fs');
const { Etcd3 } = require('etcd3');
const grpc = require('@grpc/grpc-js');   // the instance etcd3 uses (package-lock: one copy)

// grpc-js's own log lines (GOAWAY reasons and the like), for scenarios to report.
const grpcLog = [];
grpc.setLogger({ error: (...args) => grpcLog.push(args.join(' ')) });
grpc.setLogVerbosity(grpc.logVerbosity.ERROR);

const config = JSON.parse(process.argv[2]);
let current = '';
const setScenario = name => { current = name; };

// Buffers (keys and values inside raw responses) print as their text.
const asText = (k, v) => (v && v.type === 'Buffer' && Array.isArray(v.data)
  ? Buffer.from(v.data).toString() : v);

function emit(step, result) {
  process.stdout.write(JSON.stringify({ scenario: current, step, result }, asText) + '\n');
}

function emitError(step, err) {
  process.stdout.write(JSON.stringify({
    scenario: current, step,
    // (grpc-js puts the client's own elapsed time into a deadline's message)
    error: { class: err.constructor.name,
             message: String(err.message).replace(/exceeded after [\d.]+s/, 'exceeded after <t>s') },
  }) + '\n');
}

// step(name, promise-returning fn, shape fn): prints the shaped result or the error.
async function step(name, fn, shape = x => x) {
  try {
    const value = await fn();
    emit(name, shape(value));
    return value;
  } catch (err) {
    emitError(name, err);
    return undefined;
  }
}

function client(extra = {}) {
  const options = { hosts: config.endpoint, ...extra };
  if (config.ca) options.credentials = { rootCertificate: fs.readFileSync(config.ca) };
  if (config.cert) {   // a client certificate (--client-cert-auth servers)
    options.credentials.certChain = fs.readFileSync(config.cert);
    options.credentials.privateKey = fs.readFileSync(config.key);
  }
  return new Etcd3(options);
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

// Polls `cond` until true or `ms` pass; returns whether it became true.
async function until(cond, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (cond()) return true;
    await sleep(20);
  }
  return cond();
}

const kvShape = kv => kv && {
  key: kv.key.toString(), value: kv.value.toString(), create_revision: kv.create_revision,
  mod_revision: kv.mod_revision, version: kv.version, lease: kv.lease,
};
const rangeShape = r => ({ header: r.header, kvs: r.kvs.map(kvShape), more: r.more, count: r.count });

module.exports = { Etcd3, config, grpcLog, setScenario, emit, emitError, step, client, sleep, until,
                   kvShape, rangeShape };
