#!/usr/bin/python3
"""Hourglass quickstart: schedule a task 1 s out, lease it when it is due, ack it.

Generate the Python stubs once, start a server (tools/run.sh), then:

    tools/gen_python_stubs.sh build/python
    PYTHONPATH=build/python /usr/bin/python3 examples/python/quickstart.py

The address defaults to $HOURGLASS_ADDRESS, else localhost:7070. Any failed call ends the
program with a message on stderr and exit status 1.
"""

import argparse
import os
import sys
import time

import grpc
from google.protobuf import duration_pb2
from hourglass.v1 import consumer_service_pb2, consumer_service_pb2_grpc
from hourglass.v1 import scheduler_service_pb2, scheduler_service_pb2_grpc
from hourglass.v1 import task_pb2

# Every call but Lease gets this deadline; Lease's covers its wait as well.
RPC_TIMEOUT_S = 10
LEASE_WAIT_S = 10


class CallFailed(Exception):
    """A failed call, named with its method and the server's address."""

    def __init__(self, method, address, error):
        super().__init__(f"{method} on {address} failed: {error.code().name}: {error.details()}")


def run(address, queue):
    # Plaintext, as the server listens; use grpc.secure_channel behind a TLS proxy.
    with grpc.insecure_channel(address) as channel:
        scheduler = scheduler_service_pb2_grpc.SchedulerServiceStub(channel)
        consumer = consumer_service_pb2_grpc.ConsumerServiceStub(channel)

        def call(stub, method, request, timeout=RPC_TIMEOUT_S):
            try:
                return getattr(stub, method)(request, timeout=timeout)
            except grpc.RpcError as error:
                raise CallFailed(method, address, error) from None

        # Producer: deliver this payload to the queue's consumers in 1 second.
        scheduled = call(
            scheduler,
            "Schedule",
            scheduler_service_pb2.ScheduleRequest(
                queue=queue,
                payload=b"hello, hourglass",
                headers={"content-type": "text/plain"},
                delay=duration_pb2.Duration(seconds=1),
            ),
        )
        print(f"scheduled {scheduled.task_id}, due {scheduled.due_time.ToJsonString()}")

        # Consumer: a long poll that returns as soon as a task is due (or empty after 10 s).
        start = time.monotonic()
        response = call(
            consumer,
            "Lease",
            consumer_service_pb2.LeaseRequest(
                queue=queue, max_tasks=1, wait=duration_pb2.Duration(seconds=LEASE_WAIT_S)
            ),
            timeout=LEASE_WAIT_S + RPC_TIMEOUT_S,
        )
        if not response.tasks:
            raise RuntimeError(f"no task was leased within {LEASE_WAIT_S} s")
        task = response.tasks[0]
        print(
            f"leased {task.task_id} (attempt {task.attempt}) after "
            f"{time.monotonic() - start:.1f} s: {task.payload.decode()}"
        )

        # Do the work here, then Ack; delivery is at least once, so the work must be safe to
        # repeat for the same task id. (Nack instead has the task retried with backoff.)
        call(
            consumer,
            "Ack",
            consumer_service_pb2.AckRequest(task_id=task.task_id, lease_token=task.lease_token),
        )
        print("acked")

        status = call(
            scheduler,
            "GetStatus",
            scheduler_service_pb2.GetStatusRequest(task_id=scheduled.task_id),
        ).task
        state = task_pb2.TaskState.Name(status.state)
        print(f"status: {state}, attempts {status.attempts}")
        if status.state != task_pb2.TASK_STATE_SUCCEEDED:
            raise RuntimeError(f"task {scheduled.task_id} is {state}, not TASK_STATE_SUCCEEDED")


def main():
    parser = argparse.ArgumentParser(description="Schedule, lease and ack one hourglass task.")
    parser.add_argument(
        "--address",
        default=os.environ.get("HOURGLASS_ADDRESS") or "localhost:7070",
        help="the server's gRPC address (default: $HOURGLASS_ADDRESS, else localhost:7070)",
    )
    parser.add_argument("--queue", default="quickstart", help="the queue to use")
    args = parser.parse_args()
    try:
        run(args.address, args.queue)
    except (CallFailed, RuntimeError) as error:
        sys.exit(f"quickstart: {error}")


if __name__ == "__main__":
    main()
