#!/usr/bin/env node
// Hourglass quickstart for Node.js: schedules one task 1 s out, leases it when it is due (a long
// poll), acks it and prints its final status.
//
//   node quickstart.js [--address host:port] [--queue name] [--protos dir]
//
// The address defaults to $HOURGLASS_ADDRESS, else localhost:7070. The API's .proto files are
// loaded at run time from --protos ($HOURGLASS_PROTOS, else the repository's protos/). Any failed
// call ends the program with a message on stderr and exit status 1.
'use strict';

const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// Every call but Lease gets this deadline; Lease's covers its wait as well.
const RPC_TIMEOUT_MS = 10_000;
const LEASE_WAIT_S = 10;

function loadApi(protosDir) {
  const definition = protoLoader.loadSync(
    ['hourglass/v1/scheduler_service.proto', 'hourglass/v1/consumer_service.proto'],
    {
      includeDirs: [protosDir],
      keepCase: true, // Field names as in the .proto: task_id, lease_token.
      longs: String,
      enums: String, // TaskState as its name, e.g. 'TASK_STATE_SUCCEEDED'.
      defaults: true,
      oneofs: true,
    },
  );
  return grpc.loadPackageDefinition(definition).hourglass.v1;
}

// Calls a unary method of a grpc-js client as a promise, with a deadline.
function call(client, method, request, timeoutMs = RPC_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + timeoutMs }, (error, response) => {
      if (error) {
        error.method = method;
        reject(error);
      } else {
        resolve(response);
      }
    });
  });
}

// A google.protobuf.Timestamp as RFC 3339 (to the millisecond).
function rfc3339(timestamp) {
  const ms = Number(timestamp.seconds) * 1000 + Math.floor(timestamp.nanos / 1e6);
  return new Date(ms).toISOString();
}

async function run(address, queue, protosDir) {
  const api = loadApi(protosDir);
  // Plaintext, as the server listens; use grpc.credentials.createSsl() behind a TLS proxy.
  const credentials = grpc.credentials.createInsecure();
  const scheduler = new api.SchedulerService(address, credentials);
  const consumer = new api.ConsumerService(address, credentials, {
    channelOverride: scheduler.getChannel(), // One connection for both services.
  });
  try {
    // Producer: deliver this payload to the queue's consumers in 1 second.
    const scheduled = await call(scheduler, 'Schedule', {
      queue,
      payload: Buffer.from('hello, hourglass'),
      headers: { 'content-type': 'text/plain' },
      delay: { seconds: 1, nanos: 0 },
    });
    console.log(`scheduled ${scheduled.task_id}, due ${rfc3339(scheduled.due_time)}`);

    // Consumer: a long poll that returns as soon as a task is due (or empty after 10 s).
    const start = process.hrtime.bigint();
    const leased = await call(
      consumer,
      'Lease',
      { queue, max_tasks: 1, wait: { seconds: LEASE_WAIT_S, nanos: 0 } },
      LEASE_WAIT_S * 1000 + RPC_TIMEOUT_MS,
    );
    if (leased.tasks.length === 0) {
      throw new Error(`no task was leased within ${LEASE_WAIT_S} s`);
    }
    const task = leased.tasks[0];
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    console.log(
      `leased ${task.task_id} (attempt ${task.attempt}) after ${seconds.toFixed(1)} s: ` +
        task.payload.toString(),
    );

    // Do the work here, then Ack; delivery is at least once, so the work must be safe to repeat
    // for the same task id. (Nack instead has the task retried with backoff.)
    await call(consumer, 'Ack', { task_id: task.task_id, lease_token: task.lease_token });
    console.log('acked');

    const { task: status } = await call(scheduler, 'GetStatus', { task_id: scheduled.task_id });
    console.log(`status: ${status.state}, attempts ${status.attempts}`);
    if (status.state !== 'TASK_STATE_SUCCEEDED') {
      throw new Error(`task ${scheduled.task_id} is ${status.state}, not TASK_STATE_SUCCEEDED`);
    }
  } finally {
    scheduler.close();
    consumer.close();
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      address: { type: 'string', default: process.env.HOURGLASS_ADDRESS || 'localhost:7070' },
      queue: { type: 'string', default: 'quickstart' },
      protos: {
        type: 'string',
        default: process.env.HOURGLASS_PROTOS || path.join(__dirname, '..', '..', 'protos'),
      },
    },
  });
  try {
    await run(values.address, values.queue, values.protos);
  } catch (error) {
    // A gRPC error carries its status code; name it as the API's docs do (UNAVAILABLE, ...).
    const message =
      error.code !== undefined && error.method
        ? `${error.method} on ${values.address} failed: ${grpc.status[error.code]}: ${error.details}`
        : error.message;
    console.error(`quickstart: ${message}`);
    process.exitCode = 1;
  }
}

main();
