// For .ci/containers.sh: one line per JetStream stream on the server at URL: name, replicas, leader.
//   node .ci/js-streams.mjs nats://127.0.0.1:PORT
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';

// The cluster's other servers advertise addresses only the containers can reach.
const nc = await connect({ servers: process.argv[2], ignoreClusterUpdates: true });
const jsm = await jetstreamManager(nc);
for await (const s of jsm.streams.list()) console.log(`${s.config.name} ${s.config.num_replicas} ${s.cluster?.leader ?? '-'}`);
await nc.close();
