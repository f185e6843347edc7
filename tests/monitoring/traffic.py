"""Known traffic against a hourglass server, so that every series the dashboard and the rules
use exists and has a value the tests can predict.

  queue `work`:  35 tasks due now; 30 leased and acked (SUCCEEDED), 5 left READY
  queue `later`: 10 tasks due in an hour; 1 cancelled, 9 SCHEDULED
  queue `flaky`: 5 tasks with max_attempts 2; each leased and nacked twice: 5 retried, 5 DEAD
  one GetStatus of an unknown id (NOT_FOUND), for the RPC error panels

`before_deaths` runs after the tasks are scheduled and before the last nacks, so that a scraper
can see the `dead` counter at 0 first (an increase needs two samples).
"""

import support

WORK, LATER, FLAKY = "work", "later", "flaky"

EXPECTED = {
    "scheduled": 50,
    "leased": 40,  # 30 of `work` + 2 x 5 of `flaky`
    "cancelled": 1,
    "deliveries": {"succeeded": 30, "retried": 5, "dead": 5},
    "tasks": {
        (WORK, "ready"): 5,
        (WORK, "succeeded"): 30,
        (LATER, "scheduled"): 9,
        (LATER, "cancelled"): 1,
        (FLAKY, "dead"): 5,
    },
    "rpcs": {  # (method, code) -> calls
        ("Schedule", "OK"): 50,
        ("Ack", "OK"): 30,
        ("Nack", "OK"): 10,
        ("Cancel", "OK"): 1,
        ("GetStatus", "NOT_FOUND"): 1,
    },
}


def _lease_exactly(client, queue, count):
    """Leases `count` tasks of `queue` (polling with a bounded wait); fails on more or fewer."""
    leased = []
    for _ in range(50):
        if len(leased) == count:
            break
        leased += client.lease(
            queue, wait_s=1.0, max_tasks=count - len(leased), lease_duration_s=60
        )
    assert len(leased) == count, f"leased {len(leased)} tasks of {queue}, expected {count}"
    return leased


def run(client, before_deaths=lambda: None):
    for i in range(35):
        client.schedule(queue=WORK, task_id=f"work-{i}", payload=b"w", delay=support.duration(0))
    later = [
        client.schedule(
            queue=LATER, task_id=f"later-{i}", payload=b"l", delay=support.duration(3600)
        ).task_id
        for i in range(10)
    ]
    policy = support.task_pb2.RetryPolicy(
        max_attempts=2, min_backoff=support.duration(0), max_backoff=support.duration(0)
    )
    for i in range(5):
        client.schedule(
            queue=FLAKY,
            task_id=f"flaky-{i}",
            payload=b"f",
            delay=support.duration(0),
            retry_policy=policy,
        )

    for task in _lease_exactly(client, WORK, 30):
        client.ack(task.task_id, task.lease_token)
    client.cancel(later[0])
    support.expect_error(support.StatusCode.NOT_FOUND, client.status, "no-such-task")

    for task in _lease_exactly(client, FLAKY, 5):
        client.nack(task.task_id, task.lease_token, retry_delay_s=0, error="first try fails")
    before_deaths()
    for task in _lease_exactly(client, FLAKY, 5):
        assert task.attempt == 2, task
        client.nack(task.task_id, task.lease_token, retry_delay_s=0, error="second try fails")
    for i in range(5):
        assert client.status(f"flaky-{i}").state == support.State.TASK_STATE_DEAD
