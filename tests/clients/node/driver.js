#!/usr/bin/env node
// Drives the `etcd3` npm client (on @grpc/grpc-js) through named scenarios against one
// endpoint and prints one JSON line per step: {"scenario", "step", "result"} or
// {"scenario", "step", "error": {"class", "message"}}. tests/clients/test_node_etcd3.py
// runs the same scenarios against kvcore and etcd 3.5.1 and compares the lines.
//
//   node driver.js '<json config>' scenario [scenario ...]
//   config: {"endpoint": "http://127.0.0.1:2379", "ca": "/path/ca.pem" (https only),
//            "cert"/"key": a client certificate, "root_password": "..." and
//            "token_ttl_wait_ms" (auth scenario)}
//
// The scenarios are in scenarios_api.js (KV, lease, watch, cluster, the client's
// recipes) and scenarios_transport.js (transport, restarts, auth, TLS); steps.js has
// what they share.
//
// Only facts that do not depend on timing are printed (a keepalive count becomes "at
// least 2"); ids and revisions are printed as the server gave them, for the test to
// compare or normalise.
'use strict';
const { client, emitError, setScenario, step } = require('./steps');

const SCENARIOS = { ...require('./scenarios_api'), ...require('./scenarios_transport') };
const scenarios = process.argv.slice(3);

async function main() {
  const c = client();
  for (const name of scenarios) {
    setScenario(name);
    if (!SCENARIOS[name]) throw new Error(`no scenario ${name}`);
    // Revisions are compared relative to this one (the test subtracts it): an
    // earlier scenario's timing-dependent writes (the lock race) then do not matter.
    await step('base revision', () => c.get('base').exec(), r => ({ base: r.header.revision }));
    try {
      await SCENARIOS[name](c);
    } catch (err) {
      emitError('unexpected', err);
    }
  }
  c.close();
}

main().then(() => process.exit(0), err => {
  process.stderr.write(String(err && err.stack) + '\n');
  process.exit(1);
});
