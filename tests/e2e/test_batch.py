"""ScheduleBatch and AckBatch through the real binary: one call for many tasks, one result each."""

from support import State, consumer_pb2, duration, scheduler_pb2, unique


def test_schedule_batch_then_lease_and_ack_batch(client):
    queue = unique("batch")
    requests = [
        scheduler_pb2.ScheduleRequest(queue=queue, payload=b"%d" % i, delay=duration(0))
        for i in range(100)
    ]
    requests.append(scheduler_pb2.ScheduleRequest(queue="not a queue"))
    response = client.scheduler.ScheduleBatch(
        scheduler_pb2.ScheduleBatchRequest(requests=requests)
    )
    assert len(response.results) == 101
    assert all(result.code == 0 for result in response.results[:100])
    assert response.results[100].code == 3  # INVALID_ARGUMENT
    assert "queue" in response.results[100].message
    ids = {result.response.task_id for result in response.results[:100]}
    assert len(ids) == 100

    leased = []
    while len(leased) < 100:
        leased.extend(client.lease(queue, wait_s=2.0, max_tasks=100))
    acks = [
        consumer_pb2.AckRequest(task_id=t.task_id, lease_token=t.lease_token)
        for t in leased
    ]
    answer = client.consumer.AckBatch(consumer_pb2.AckBatchRequest(acks=acks))
    assert [result.code for result in answer.results] == [0] * 100
    assert {t.task_id for t in leased} == ids
    for task_id in list(ids)[:10]:
        assert client.status(task_id).state == State.TASK_STATE_SUCCEEDED
