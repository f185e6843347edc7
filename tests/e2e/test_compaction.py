"""The data directory grows with the live tasks, not with their history (snapshots + compaction)."""

import os

import support


def _dir_bytes(path):
    return sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path))


def test_churn_keeps_the_data_directory_bounded(start_server):
    # 50 live tasks, then 20 rounds of 200 tasks scheduled, leased and acked: about 12,000
    # records of history. With 64 KiB snapshots the directory must stay near the live set.
    server = start_server("--snapshot_bytes=65536", "--retention=0s")
    client = server.client()
    queue = support.unique("churn")
    live = [
        client.schedule(
            queue=queue + "-live", payload=b"x" * 100, delay=support.duration(3600)
        )
        for _ in range(50)
    ]
    sizes = []
    for _ in range(20):
        for _ in range(200):
            client.schedule(queue=queue, payload=b"y" * 100)
        done = 0
        while done < 200:
            for task in client.lease(queue, wait_s=1.0, max_tasks=100):
                client.ack(task.task_id, task.lease_token)
                done += 1
        sizes.append(_dir_bytes(server.data_dir))

    samples = support.parse_metrics(support.scrape(server))
    snapshots = support.metric_value(samples, "hourglass_snapshots_total", result="ok")
    written = support.metric_value(samples, "hourglass_log_written_bytes_total")
    assert (
        snapshots >= 3
    ), f"only {snapshots} snapshots after {written:.0f} bytes of records"
    # Bounded: the last size is no larger than the peak of the first rounds, and far below the
    # history written.
    assert sizes[-1] <= max(sizes[:5]) * 1.5, sizes
    assert sizes[-1] < written / 3, (sizes, written)
    names = os.listdir(server.data_dir)
    assert sum(name.startswith("snapshot-") for name in names) <= 1, names

    # And nothing live was lost to compaction: restart and look.
    server.terminate()
    restarted = start_server("--snapshot_bytes=65536", data_dir=server.data_dir)
    again = restarted.client()
    for response in live:
        assert (
            again.status(response.task_id).state == support.State.TASK_STATE_SCHEDULED
        )
    recovered = restarted.event("recovered")
    assert recovered["snapshot_lsn"] > 0, recovered
