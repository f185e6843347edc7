#!/usr/bin/python3
"""Hourglass quickstart: schedule a task 2 s out, lease it when it is due, ack it.

Generate the Python stubs once, start a server (tools/run.sh), then:

    tools/gen_python_stubs.sh build/python
    PYTHONPATH=build/python /usr/bin/python3 examples/python/quickstart.py
"""

import argparse
import sys
import time

import grpc
from google.protobuf import duration_pb2
from hourglass.v1 import consumer_service_pb2, consumer_service_pb2_grpc
from hourglass.v1 import scheduler_service_pb2, scheduler_service_pb2_grpc
from hourglass.v1 import task_pb2


def main():
    parser = argparse.ArgumentParser(description="Schedule, lease and ack one hourglass task.")
    parser.add_argument("--address", default="localhost:7070", help="the server's gRPC address")
    parser.add_argument("--queue", default="quickstart", help="the queue to use")
    args = parser.parse_args()

    with grpc.insecure_channel(args.address) as channel:
        scheduler = scheduler_service_pb2_grpc.SchedulerServiceStub(channel)
        consumer = consumer_service_pb2_grpc.ConsumerServiceStub(channel)

        # Producer: deliver this payload to the queue's consumers in 2 seconds.
        scheduled = scheduler.Schedule(
            scheduler_service_pb2.ScheduleRequest(
                queue=args.queue,
                payload=b"hello, hourglass",
                headers={"content-type": "text/plain"},
                delay=duration_pb2.Duration(seconds=2),
            ),
            timeout=10,
        )
        print(f"scheduled {scheduled.task_id}, due {scheduled.due_time.ToJsonString()}")

        # Consumer: a long poll that returns as soon as a task is due (or after 10 s empty).
        start = time.monotonic()
        response = consumer.Lease(
            consumer_service_pb2.LeaseRequest(
                queue=args.queue, max_tasks=1, wait=duration_pb2.Duration(seconds=10)
            ),
            timeout=20,
        )
        if not response.tasks:
            sys.exit("no task was leased within 10 s")
        task = response.tasks[0]
        print(
            f"leased {task.task_id} (attempt {task.attempt}) after "
            f"{time.monotonic() - start:.1f} s: {task.payload.decode()}"
        )

        # Done with it: Ack (or Nack to have it retried with backoff).
        consumer.Ack(
            consumer_service_pb2.AckRequest(task_id=task.task_id, lease_token=task.lease_token),
            timeout=10,
        )
        print("acked")

        status = scheduler.GetStatus(
            scheduler_service_pb2.GetStatusRequest(task_id=scheduled.task_id), timeout=10
        ).task
        print(f"status: {task_pb2.TaskState.Name(status.state)}, attempts {status.attempts}")


if __name__ == "__main__":
    main()
