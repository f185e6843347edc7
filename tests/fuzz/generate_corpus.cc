// generate_corpus: writes the fuzzers' seed corpora. Its output is committed in
// tests/fuzz/corpus/; run it again when the log format, the log records or the API change:
//
//   generate_corpus tests/fuzz/corpus
//
// corpus/log_reader_fuzzer/: log segments written by the real LogWriter with the records a real
// TaskStore logs (pull and push tasks through their whole lives, a record spanning blocks), a
// snapshot made by SnapshotChunk, and damaged copies: torn in a header and in data, a zero-filled
// tail, a flipped byte mid-log, a record that does not parse, a record that makes no sense.
//
// corpus/request_fuzzer/: one byte naming the message (request_fuzzer.cc), then a serialized
// ScheduleRequest (pull, delay, at, headers, retry policy, HTTP and gRPC push targets, and
// invalid ones), ScheduleBatchRequest, LeaseRequest, NackRequest or ListTasksRequest (with a real
// page token).
//
// The same files every run but for the store's random parts (lease tokens, payload fingerprints):
// time is a FakeClock's and task ids are fixed.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "hourglass/v1/consumer_service.pb.h"
#include "hourglass/v1/scheduler_service.pb.h"
#include "service/validation.h"
#include "store/file.h"
#include "store/log_writer.h"
#include "store/task_store.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/testing/fake_clock.h"

namespace hourglass {
namespace {

void WriteOut(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  FUZZ_CHECK(out.good(), path);
}

// The bytes of a log holding `records`, as LogWriter writes them.
std::string LogBytes(const std::vector<std::string>& records) {
  FakeFileSystem fs;
  FUZZ_CHECK(fs.CreateDir("/d").ok(), "/d");
  {
    std::unique_ptr<WritableFile> file = *fs.NewWritableFile("/d/log");
    LogWriter writer(*file);
    for (const std::string& record : records) FUZZ_CHECK(writer.AddRecord(record).ok(), "add");
    FUZZ_CHECK(file->Close().ok(), "close");
  }
  return *fs.ReadFileToString("/d/log");
}

std::vector<std::string> Serialized(const std::vector<store::v1::LogRecord>& records) {
  std::vector<std::string> out;
  for (const store::v1::LogRecord& record : records) out.push_back(record.SerializeAsString());
  return out;
}

struct Stores {
  std::vector<store::v1::LogRecord> pull;      // pull tasks through their lives
  std::vector<store::v1::LogRecord> push;      // push tasks through theirs
  std::vector<store::v1::LogRecord> big;       // one task with a payload longer than a block
  std::vector<store::v1::LogRecord> snapshot;  // TaskPut records of the pull store at its end
};

Stores MakeRecords() {
  Stores out;
  {
    FakeClock clock;
    HorizonTimers timers(clock);
    RecordingLog log;
    TaskStore store(clock, timers, {}, &log);
    for (int i = 0; i < 4; ++i) {
      NewTask task{.queue = i % 2 == 0 ? "emails" : "default",
                   .task_id = absl::StrCat("task-", i),
                   .payload = absl::StrCat("payload ", i),
                   .headers = {{"content-type", "text/plain"}},
                   .due_time = clock.Now() + absl::Seconds(i),
                   .retry_policy = {.max_attempts = 2,
                                    .min_backoff = absl::Seconds(1),
                                    .max_backoff = absl::Seconds(10)}};
      FUZZ_CHECK(store.Schedule(std::move(task)).ok(), "schedule");
    }
    FUZZ_CHECK(store.Cancel("task-3").ok(), "cancel");
    FUZZ_CHECK(store.Reschedule("task-2", clock.Now() + absl::Seconds(1)).ok(), "reschedule");
    // The snapshot is taken midway, while the store holds tasks in every state.
    DriveStore(store, clock, timers, /*rounds=*/3);
    size_t cursor = 0;
    while (store.SnapshotChunk(&cursor, 2, &out.snapshot)) {
    }
    FUZZ_CHECK(!out.snapshot.empty(), "an empty snapshot");
    DriveStore(store, clock, timers, /*rounds=*/12);
    out.pull = log.records();
  }
  {
    FakeClock clock;
    HorizonTimers timers(clock);
    RecordingLog log;
    TaskStore store(clock, timers, {}, &log);
    PushTarget http{.kind = PushTarget::Kind::kHttp,
                    .url = "https://receiver.example.com/tasks",
                    .http_headers = {{"Authorization", "Bearer x"}}};
    PushTarget grpc{.kind = PushTarget::Kind::kGrpc,
                    .address = "receiver.example.com:443",
                    .method = "/receiver.v1.Receiver/Deliver",
                    .tls = true};
    for (int i = 0; i < 3; ++i) {
      NewTask task{.queue = "webhooks",
                   .task_id = absl::StrCat("push-", i),
                   .payload = "{}",
                   .due_time = clock.Now(),
                   .target = i == 1 ? grpc : http};
      FUZZ_CHECK(store.Schedule(std::move(task)).ok(), "schedule push");
    }
    DriveStore(store, clock, timers, /*rounds=*/12);
    out.push = log.records();
  }
  {
    FakeClock clock;
    HorizonTimers timers(clock);
    RecordingLog log;
    TaskStore store(clock, timers, {}, &log);
    NewTask task{.queue = "big",
                 .task_id = "big",
                 .payload = std::string(33000, 'x'),
                 .due_time = clock.Now()};
    FUZZ_CHECK(store.Schedule(std::move(task)).ok(), "schedule big");
    DriveStore(store, clock, timers, /*rounds=*/2);
    out.big = log.records();
  }
  return out;
}

void WriteLogCorpus(const std::string& dir) {
  const Stores stores = MakeRecords();
  const std::string pull = LogBytes(Serialized(stores.pull));
  WriteOut(dir + "/empty", "");
  WriteOut(dir + "/one_schedule.wal", LogBytes(Serialized({stores.pull[0]})));
  WriteOut(dir + "/pull_lifecycle.wal", pull);
  WriteOut(dir + "/push_lifecycle.wal", LogBytes(Serialized(stores.push)));
  WriteOut(dir + "/spans_blocks.wal", LogBytes(Serialized(stores.big)));
  WriteOut(dir + "/snapshot.snap", LogBytes(Serialized(stores.snapshot)));
  // What a crash leaves: the last record cut in its header, cut in its data; zeroes where the
  // file's size grew before its data did.
  WriteOut(dir + "/torn_in_header.wal", pull.substr(0, pull.size() - 3));
  const std::string last_record = stores.pull.back().SerializeAsString();
  WriteOut(dir + "/torn_in_data.wal", pull.substr(0, pull.size() - last_record.size() / 2));
  WriteOut(dir + "/zero_tail.wal", pull + std::string(100, '\0'));
  // Corruption with records after it.
  std::string flipped = pull;
  flipped[flipped.size() / 3] ^= 0x20;
  WriteOut(dir + "/flipped_byte.wal", flipped);
  // Records with valid checksums that are not what the log holds.
  WriteOut(dir + "/not_a_record.wal",
           LogBytes({stores.pull[0].SerializeAsString(), std::string("\xff\xff\xff", 3)}));
  store::v1::LogRecord senseless = stores.pull[0];
  senseless.mutable_put()->mutable_state()->set_state(42);
  WriteOut(dir + "/senseless_state.wal", LogBytes(Serialized({senseless})));
  store::v1::LogRecord far = stores.pull[0];
  far.mutable_put()->mutable_state()->set_due_time_unix_nanos(INT64_MAX);
  WriteOut(dir + "/far_due_time.wal", LogBytes(Serialized({far})));
  WriteOut(dir + "/empty_record.wal", LogBytes({std::string()}));
}

void WriteRequest(const std::string& dir, const std::string& name, char kind,
                  const google::protobuf::Message& message) {
  WriteOut(dir + "/" + name, std::string(1, kind) + message.SerializeAsString());
}

// A request as raw bytes: what no client library serializes (a field of the wrong wire type,
// unknown groups), prefixed with its kind.
void WriteRawRequest(const std::string& dir, const std::string& name, char kind,
                     const std::string& bytes) {
  WriteOut(dir + "/" + name, std::string(1, kind) + bytes);
}

void WriteRequestCorpus(const std::string& dir) {
  v1::ScheduleRequest pull;
  pull.set_queue("emails");
  pull.set_task_id("welcome-42");
  pull.set_payload("hello");
  pull.mutable_delay()->set_seconds(5);
  WriteRequest(dir, "schedule_pull", 0, pull);

  v1::ScheduleRequest full = pull;
  (*full.mutable_headers())["content-type"] = "application/json";
  (*full.mutable_headers())["trace"] = "abc";
  full.mutable_retry_policy()->set_max_attempts(3);
  full.mutable_retry_policy()->mutable_min_backoff()->set_nanos(500000000);
  full.mutable_retry_policy()->mutable_max_backoff()->set_seconds(60);
  WriteRequest(dir, "schedule_headers_retry", 0, full);

  v1::ScheduleRequest at;
  at.mutable_at()->set_seconds(1800000000 + 3600);
  WriteRequest(dir, "schedule_at", 0, at);

  v1::ScheduleRequest http = pull;
  http.set_queue("webhooks");
  http.mutable_http_target()->set_url("https://receiver.example.com/tasks?x=1");
  (*http.mutable_http_target()->mutable_headers())["Authorization"] = "Bearer token";
  http.mutable_dispatch_deadline()->set_seconds(10);
  WriteRequest(dir, "schedule_http_target", 0, http);

  v1::ScheduleRequest grpc = pull;
  grpc.mutable_grpc_target()->set_address("receiver.example.com:443");
  grpc.mutable_grpc_target()->set_method("/receiver.v1.Receiver/Deliver");
  grpc.mutable_grpc_target()->set_tls(true);
  (*grpc.mutable_headers())["x-tenant"] = "blue";
  WriteRequest(dir, "schedule_grpc_target", 0, grpc);

  v1::ScheduleRequest ipv6 = pull;
  ipv6.mutable_grpc_target()->set_address("[2001:db8::1]:50051");
  ipv6.mutable_grpc_target()->set_method("/a.B/C");
  WriteRequest(dir, "schedule_grpc_ipv6", 0, ipv6);

  v1::ScheduleRequest loopback = pull;
  loopback.mutable_http_target()->set_url("http://127.0.0.1:8080/");
  WriteRequest(dir, "schedule_loopback_refused", 0, loopback);

  v1::ScheduleRequest negative = pull;
  negative.mutable_delay()->set_seconds(-5);
  WriteRequest(dir, "schedule_negative_delay", 0, negative);

  v1::ScheduleRequest absurd = pull;
  absurd.mutable_delay()->set_seconds(315576000000);
  WriteRequest(dir, "schedule_absurd_delay", 0, absurd);

  v1::ScheduleRequest bad_queue = pull;
  bad_queue.set_queue("no spaces/allowed");
  bad_queue.set_task_id("has space");
  WriteRequest(dir, "schedule_bad_names", 0, bad_queue);

  v1::ScheduleBatchRequest batch;
  *batch.add_requests() = pull;
  *batch.add_requests() = http;
  v1::ScheduleRequest clash = pull;
  clash.set_payload("other payload");
  *batch.add_requests() = clash;
  *batch.add_requests() = pull;
  WriteRequest(dir, "batch", 1, batch);
  WriteRequest(dir, "batch_empty", 1, v1::ScheduleBatchRequest());

  v1::LeaseRequest lease;
  lease.set_queue("emails");
  lease.set_max_tasks(10);
  lease.mutable_lease_duration()->set_seconds(60);
  lease.mutable_wait()->set_seconds(5);
  WriteRequest(dir, "lease", 2, lease);
  WriteRequest(dir, "lease_defaults", 2, v1::LeaseRequest());
  v1::LeaseRequest lease_bad = lease;
  lease_bad.set_max_tasks(1001);
  lease_bad.mutable_lease_duration()->set_nanos(-1);
  WriteRequest(dir, "lease_bad", 2, lease_bad);

  v1::NackRequest nack;
  nack.set_task_id("welcome-42");
  nack.set_lease_token("token");
  nack.mutable_retry_delay()->set_seconds(30);
  nack.set_error("receiver said 503");
  WriteRequest(dir, "nack", 3, nack);
  v1::NackRequest nack_long = nack;
  nack_long.clear_retry_delay();
  // 4095 ASCII bytes then a 3-byte character: the cut at 4096 bytes falls inside it.
  nack_long.set_error(std::string(4095, 'e') + "\xe2\x82\xac" + "tail");
  WriteRequest(dir, "nack_long_utf8_error", 3, nack_long);

  v1::ListTasksRequest list;
  list.set_queue("emails");
  list.set_state(v1::TASK_STATE_DEAD);
  list.set_page_size(2);
  WriteRequest(dir, "list", 4, list);
  ListParams params{.queue = "emails", .state = TaskState::kDead, .page_size = 2};
  list.set_page_token(ListPageToken(params, 7));
  WriteRequest(dir, "list_page_token", 4, list);
  WriteRequest(dir, "list_all", 4, v1::ListTasksRequest());

  // Known fields of the wrong wire type (refused, naming the field), at the top and nested, and
  // unknown fields (ignored): queue as a varint; delay.seconds as bytes; a batch item's
  // retry_policy.max_attempts as a fixed32; Lease.max_tasks as bytes.
  WriteRawRequest(dir, "schedule_wrong_wire_type", 0, std::string("\x08\x05", 2));
  WriteRawRequest(dir, "schedule_nested_wrong_wire_type", 0,
                  std::string("\x2a\x03\x0a\x01\x78", 5));
  WriteRawRequest(dir, "batch_item_wrong_wire_type", 1,
                  std::string("\x0a\x00\x0a\x07\x3a\x05\x0d\x01\x00\x00\x00", 11));
  WriteRawRequest(dir, "lease_wrong_wire_type", 2, std::string("\x12\x01\x05", 3));
  // pull, then unknown fields 99 (varint), 100 (a group holding a group), 101 (bytes).
  WriteRawRequest(dir, "schedule_unknown_fields", 0,
                  pull.SerializeAsString() +
                      std::string("\x98\x06\x01\xa3\x06\xa3\x06\xa4\x06\xa4\x06\xaa\x06\x01x", 15));
  // A batch whose items are counted before they are parsed: an unknown group holding a field 1
  // (not an item), and field 1 as a varint (not an item either; refused as the wrong wire type).
  const std::string items = batch.SerializeAsString();
  WriteRawRequest(dir, "batch_group_not_an_item", 1,
                  items + std::string("\xa3\x06\x0a\x00\xa4\x06", 6));
  WriteRawRequest(dir, "batch_varint_not_an_item", 1, items + std::string("\x08\x01", 2));
}

}  // namespace
}  // namespace hourglass

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  std::filesystem::create_directories(dir + "/log_reader_fuzzer");
  std::filesystem::create_directories(dir + "/request_fuzzer");
  hourglass::WriteLogCorpus(dir + "/log_reader_fuzzer");
  hourglass::WriteRequestCorpus(dir + "/request_fuzzer");
  return 0;
}
