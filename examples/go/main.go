// Command quickstart schedules one hourglass task 1 s out, leases it when it is
// due (a long poll), acks it and prints its final status.
//
//	quickstart [-address host:port] [-queue name]
//
// The address defaults to $HOURGLASS_ADDRESS, else localhost:7070. Any failed
// call ends the program with a message on stderr and exit status 1.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	hourglassv1 "hourglass/gen/hourglass/v1"
)

const (
	// rpcTimeout bounds each call but Lease, whose deadline covers its wait as well.
	rpcTimeout = 10 * time.Second
	// leaseWait is how long Lease waits for a due task before it answers with none.
	leaseWait = 10 * time.Second
)

func main() {
	address := os.Getenv("HOURGLASS_ADDRESS")
	if address == "" {
		address = "localhost:7070"
	}
	flag.StringVar(&address, "address", address, "the server's gRPC address (env HOURGLASS_ADDRESS)")
	queue := flag.String("queue", "quickstart", "the queue to use")
	flag.Parse()

	if err := run(address, *queue); err != nil {
		fmt.Fprintf(os.Stderr, "quickstart: %v\n", err)
		os.Exit(1)
	}
}

func run(address, queue string) error {
	// Plaintext, as the server listens; use TLS credentials behind a TLS proxy.
	conn, err := grpc.Dial(address, grpc.WithInsecure())
	if err != nil {
		return fmt.Errorf("connect to %s: %w", address, err)
	}
	defer conn.Close()
	scheduler := hourglassv1.NewSchedulerServiceClient(conn)
	consumer := hourglassv1.NewConsumerServiceClient(conn)

	// Producer: deliver this payload to the queue's consumers in 1 second.
	scheduleCtx, scheduleCancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer scheduleCancel()
	scheduled, err := scheduler.Schedule(scheduleCtx, &hourglassv1.ScheduleRequest{
		Queue:   queue,
		Payload: []byte("hello, hourglass"),
		Headers: map[string]string{"content-type": "text/plain"},
		When:    &hourglassv1.ScheduleRequest_Delay{Delay: durationpb.New(time.Second)},
	})
	if err != nil {
		return rpcError("Schedule", address, err)
	}
	fmt.Printf("scheduled %s, due %s\n", scheduled.GetTaskId(),
		scheduled.GetDueTime().AsTime().Format(time.RFC3339Nano))

	// Consumer: a long poll that returns as soon as a task is due (or empty after 10 s).
	start := time.Now()
	leaseCtx, leaseCancel := context.WithTimeout(context.Background(), leaseWait+rpcTimeout)
	defer leaseCancel()
	leased, err := consumer.Lease(leaseCtx, &hourglassv1.LeaseRequest{
		Queue:    queue,
		MaxTasks: 1,
		Wait:     durationpb.New(leaseWait),
	})
	if err != nil {
		return rpcError("Lease", address, err)
	}
	if len(leased.GetTasks()) == 0 {
		return fmt.Errorf("no task was leased within %s", leaseWait)
	}
	task := leased.GetTasks()[0]
	fmt.Printf("leased %s (attempt %d) after %.1f s: %s\n", task.GetTaskId(), task.GetAttempt(),
		time.Since(start).Seconds(), task.GetPayload())

	// Do the work here, then Ack; delivery is at least once, so the work must be safe to repeat
	// for the same task id. (Nack instead has the task retried with backoff.)
	ackCtx, ackCancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer ackCancel()
	if _, err := consumer.Ack(ackCtx, &hourglassv1.AckRequest{
		TaskId:     task.GetTaskId(),
		LeaseToken: task.GetLeaseToken(),
	}); err != nil {
		return rpcError("Ack", address, err)
	}
	fmt.Println("acked")

	statusCtx, statusCancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer statusCancel()
	got, err := scheduler.GetStatus(statusCtx,
		&hourglassv1.GetStatusRequest{TaskId: scheduled.GetTaskId()})
	if err != nil {
		return rpcError("GetStatus", address, err)
	}
	fmt.Printf("status: %s, attempts %d\n", got.GetTask().GetState(), got.GetTask().GetAttempts())
	if got.GetTask().GetState() != hourglassv1.TaskState_TASK_STATE_SUCCEEDED {
		return fmt.Errorf("task %s is %s, not TASK_STATE_SUCCEEDED", scheduled.GetTaskId(),
			got.GetTask().GetState())
	}
	return nil
}

// rpcError names the call, the address and the gRPC status code of a failed call.
func rpcError(method, address string, err error) error {
	s := status.Convert(err)
	return fmt.Errorf("%s on %s failed: %s: %s", method, address, s.Code(), s.Message())
}
