// Tests of Wal, the write-ahead log of a data directory:
//
//  1. group commit: LSNs, one sync per batch, WhenDurable callbacks (once each, after the sync, in
//     LSN order), --fsync=never, segment rotation, Stop();
//  2. recovery: a recovered store equals the live one; an empty directory; a torn tail is cut off
//     and the log goes on cleanly; corruption elsewhere, a missing segment or an unparsable record
//     stop the start with the file and offset (or are skipped with skip_corruption);
//  3. faults: a failed write or sync ends the process (a death test) without acknowledging the
//     batch it could not make durable, and the next start finds everything acknowledged;
//  4. the model check of issue 3: random operations on a TaskStore, snapshots, crashes at random
//     points in every mode FakeFileSystem simulates, recovery, and on again, for generations:
//     every recovery ends no earlier than what was durable (so acknowledged) at the crash, every
//     task is as it was at some LSN between that and the last one appended, and without a
//     snapshot the whole store is exactly the live one as of the recovered LSN.
//
// Files live in a FakeFileSystem (one smoke test uses PosixFileSystem in a temporary directory).
// Tests that need the writer thread at a known point reach the files through ProcessFs, which can
// hold each group commit after its data is written and before it is synced until the test lets it
// go, and which simulates the crash of one server process. Time is simulated (FakeClock,
// FakeTimers): nothing sleeps.
#include "store/wal.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "store/file.h"
#include "store/log_reader.h"
#include "store/log_writer.h"
#include "store/task_log.h"
#include "store/task_store.h"
#include "tests/store/fake_timers.h"
#include "tests/store/task_info_describe.h"
#include "tests/testing/fake_clock.h"
#include "wheel/clock.h"

namespace hourglass {
namespace {

using store::v1::LogRecord;
using CrashMode = FakeFileSystem::CrashMode;
using Op = FakeFileSystem::Op;

constexpr char kDir[] = "/data";
constexpr absl::Duration kRetention = absl::Seconds(5);
// How long a test waits for the writer thread before it gives up: a safety bound that only a
// deadlock reaches.
constexpr absl::Duration kPatience = absl::Seconds(30);
// 2024-01-01T00:00:00Z.
const absl::Time kStart = absl::FromUnixSeconds(1704067200);

std::string SegmentName(uint64_t first_lsn) { return absl::StrFormat("log-%020d.wal", first_lsn); }
std::string SegmentPath(uint64_t first_lsn) {
  return absl::StrCat(kDir, "/", SegmentName(first_lsn));
}

// What the tests vary of a Wal's options (Wal::Options has members without defaults, which a
// designated initializer would have to name).
struct WalSettings {
  bool sync = true;
  uint64_t segment_bytes = uint64_t{64} << 20;
  uint64_t snapshot_bytes = 0;  // never, unless a test is about snapshots
  bool skip_corruption = false;
};
Wal::Options OptionsFor(FileSystem& fs, WalSettings settings = {}, std::string dir = kDir) {
  Wal::Options options;
  options.dir = std::move(dir);
  options.fs = &fs;
  options.sync = settings.sync;
  options.segment_bytes = settings.segment_bytes;
  options.snapshot_bytes = settings.snapshot_bytes;
  options.skip_corruption = settings.skip_corruption;
  return options;
}

std::string CrashModeName(const CrashMode& mode) {
  const char* data = "?";
  switch (mode.data) {
    case CrashMode::UnsyncedData::kKeep:
      data = "keep";
      break;
    case CrashMode::UnsyncedData::kDrop:
      data = "drop";
      break;
    case CrashMode::UnsyncedData::kTornPrefix:
      data = "torn prefix";
      break;
    case CrashMode::UnsyncedData::kTornPrefixZeroes:
      data = "torn prefix + zeroes";
      break;
  }
  return absl::StrCat("{unsynced data: ", data,
                      mode.undo_unsynced_dir_ops ? ", directory ops undone" : "", ", seed ",
                      mode.seed, "}");
}

// ProcessFs: the files as one server process sees them, over a FakeFileSystem (the disk) shared by
// every process of a test.
//
//  - Holding commits: while HoldCommits(true), every Sync() (and Flush()) of a segment opened
//    here hands its data to the disk, then waits before syncing until the test calls Release()
//    (one commit each), so that the test knows where the writer thread is and what is on the disk
//    but not yet durable. held() counts the commits that arrived at the hold.
//  - Crashing: Crash() (or a CrashAt() trigger, inside the call of the writer thread that it
//    names) simulates the crash on the disk. The process is then dead: every later call through
//    this ProcessFs succeeds and changes nothing (a dead process's writes reach no disk), so the
//    old Wal runs on harmlessly until it is destroyed, and the test must ignore what it reports.
//
// Thread-safe. Calls into the disk are made under mu_, so that a crash falls between two of them.
class ProcessFs final : public FileSystem {
 public:
  explicit ProcessFs(FakeFileSystem& disk) : disk_(disk) {}

  // Called (under mu_, on the crashing thread) just before the crash is simulated.
  void SetOnCrash(std::function<void()> on_crash) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    on_crash_ = std::move(on_crash);
  }

  void HoldCommits(bool hold) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    holding_ = hold;
  }
  // Lets the oldest held commit (or the next one to arrive) go on to its sync.
  void Release() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ++released_;
  }
  // Commits that arrived at the hold so far; those not released are waiting there.
  int64_t held() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return held_;
  }
  bool holding_one() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return held_ > released_;
  }
  // Marks `lsn` durable (from a WhenDurable callback), for AwaitProgress().
  void NoteDurable(uint64_t lsn) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    noted_durable_ = std::max(noted_durable_, lsn);
  }
  // Waits until a commit waits at the hold unreleased, NoteDurable(>= lsn) was called, or the
  // process crashed. False after kPatience.
  bool AwaitProgress(uint64_t lsn) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto progress = [this, lsn]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return held_ > released_ || noted_durable_ >= lsn || crashed_;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&progress), kPatience);
  }
  // Waits until `n` commits have arrived at the hold. False after kPatience.
  bool AwaitHeld(int64_t n) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto arrived = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return held_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&arrived), kPatience);
  }

  // The process crashes now.
  void Crash(const CrashMode& mode) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    CrashLocked(mode);
  }
  // The process crashes in the `n`-th call of `op` from now on (1: the next), before the call
  // reaches the disk (kSync: after the data reached it, before it is synced; kOpen: creating
  // files only).
  void CrashAt(Op op, int n, const CrashMode& mode) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    crash_at_ = CrashTrigger{op, n, mode};
  }
  bool crashed() const { return crashed_.load(); }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(const std::string& path) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    return Open(path, /*truncate=*/false);
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    return Open(path, /*truncate=*/true);
  }
  absl::StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(
      const std::string& path) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (crashed_) return DeadError();
    return disk_.NewSequentialFile(path);
  }
  absl::StatusOr<std::string> ReadFileToString(const std::string& path) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (crashed_) return DeadError();
    return disk_.ReadFileToString(path);
  }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (crashed_) return DeadError();
    return disk_.ListDir(dir);
  }
  absl::Status Rename(const std::string& from, const std::string& to) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (BeforeOpLocked(Op::kRename)) return absl::OkStatus();
    return disk_.Rename(from, to);
  }
  absl::Status Remove(const std::string& path) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (BeforeOpLocked(Op::kRemove)) return absl::OkStatus();
    return disk_.Remove(path);
  }
  absl::Status CreateDir(const std::string& path) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (crashed_) return absl::OkStatus();
    return disk_.CreateDir(path);
  }
  absl::Status SyncDir(const std::string& dir) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (BeforeOpLocked(Op::kSyncDir)) return absl::OkStatus();
    return disk_.SyncDir(dir);
  }
  absl::Status Truncate(const std::string& path, uint64_t size) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (BeforeOpLocked(Op::kTruncate)) return absl::OkStatus();
    return disk_.Truncate(path, size);
  }
  absl::StatusOr<uint64_t> FileSize(const std::string& path) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (crashed_) return DeadError();
    return disk_.FileSize(path);
  }
  bool Exists(const std::string& path) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return !crashed_ && disk_.Exists(path);
  }

 private:
  class File;
  struct CrashTrigger {
    Op op;
    int countdown;  // calls of `op` still to come, this one included
    CrashMode mode;
  };

  static absl::Status DeadError() {
    return absl::FailedPreconditionError("the process crashed (simulated)");
  }

  absl::StatusOr<std::unique_ptr<WritableFile>> Open(const std::string& path, bool truncate)
      ABSL_LOCKS_EXCLUDED(mu_);

  void CrashLocked(const CrashMode& mode) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (crashed_) return;
    crashed_ = true;
    if (on_crash_) on_crash_();
    disk_.SimulateCrash(mode);
  }
  // Before a call of `op`: fires a CrashAt() trigger that names it. True when the process is
  // dead, and the call must change nothing.
  bool BeforeOpLocked(Op op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!crashed_ && crash_at_.has_value() && crash_at_->op == op && --crash_at_->countdown == 0) {
      const CrashMode mode = crash_at_->mode;
      crash_at_.reset();
      CrashLocked(mode);
    }
    return crashed_;
  }

  FakeFileSystem& disk_;
  mutable absl::Mutex mu_;
  std::atomic<bool> crashed_{false};  // written under mu_; read without it by crashed()
  std::function<void()> on_crash_ ABSL_GUARDED_BY(mu_);
  std::optional<CrashTrigger> crash_at_ ABSL_GUARDED_BY(mu_);
  bool holding_ ABSL_GUARDED_BY(mu_) = false;
  int64_t held_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t released_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t noted_durable_ ABSL_GUARDED_BY(mu_) = 0;
};

// A WritableFile of a ProcessFs: the disk's file, or nothing once the process crashed.
class ProcessFs::File final : public WritableFile {
 public:
  // `holdable`: a segment, whose commits HoldCommits() holds (a snapshot's sync is never held).
  File(ProcessFs& fs, std::unique_ptr<WritableFile> file, bool holdable)
      : fs_(fs), file_(std::move(file)), holdable_(holdable) {}

  absl::Status Append(absl::string_view data) override {
    absl::MutexLock lock(&fs_.mu_);
    if (fs_.BeforeOpLocked(Op::kAppend)) return absl::OkStatus();
    return file_->Append(data);
  }
  absl::Status Flush() override { return Commit(/*sync=*/false); }
  absl::Status Sync() override { return Commit(/*sync=*/true); }
  absl::Status Close() override {
    absl::MutexLock lock(&fs_.mu_);
    if (fs_.BeforeOpLocked(Op::kClose)) return absl::OkStatus();
    return file_->Close();
  }

 private:
  absl::Status Commit(bool sync) {
    absl::MutexLock lock(&fs_.mu_);
    if (fs_.BeforeOpLocked(Op::kFlush)) return absl::OkStatus();
    if (absl::Status s = file_->Flush(); !s.ok()) return s;
    if (fs_.holding_ && holdable_) {
      const int64_t ticket = ++fs_.held_;
      auto go = [this, ticket]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(fs_.mu_) {
        return fs_.crashed_ || !fs_.holding_ || fs_.released_ >= ticket;
      };
      fs_.mu_.Await(absl::Condition(&go));
    }
    if (!sync) return absl::OkStatus();
    if (fs_.BeforeOpLocked(Op::kSync)) return absl::OkStatus();
    return file_->Sync();
  }

  ProcessFs& fs_;
  const std::unique_ptr<WritableFile> file_;  // null when opened after the crash
  const bool holdable_;
};

absl::StatusOr<std::unique_ptr<WritableFile>> ProcessFs::Open(const std::string& path,
                                                              bool truncate) {
  const absl::string_view name = absl::string_view(path).substr(path.rfind('/') + 1);
  const bool segment = absl::StartsWith(name, "log-") && absl::EndsWith(name, ".wal");
  absl::MutexLock lock(&mu_);
  if (BeforeOpLocked(Op::kOpen)) return std::make_unique<File>(*this, nullptr, segment);
  absl::StatusOr<std::unique_ptr<WritableFile>> file =
      truncate ? disk_.NewWritableFile(path) : disk_.NewAppendableFile(path);
  if (!file.ok()) return file.status();
  return std::make_unique<File>(*this, *std::move(file), segment);
}

// A TaskLog between a TaskStore and a Wal that remembers the records of one server process by
// their LSN: what the model check holds a recovered store against.
//
// Thread-safe (the store calls Append() under its own lock).
class HistoryLog final : public TaskLog {
 public:
  // A new process, whose Wal numbers its first record `first_lsn`.
  void Start(Wal* wal, uint64_t first_lsn) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    wal_ = wal;
    first_lsn_ = first_lsn;
    records_.clear();
  }

  uint64_t Append(const LogRecord& record) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    const uint64_t lsn = wal_->Append(record);
    EXPECT_EQ(lsn, first_lsn_ + records_.size()) << "LSNs count up by one from the recovered ones";
    records_.push_back(record);
    return lsn;
  }

  uint64_t first_lsn() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return first_lsn_;
  }
  // The record numbered `lsn`, which must have been appended.
  LogRecord At(uint64_t lsn) const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return records_.at(lsn - first_lsn_);
  }

 private:
  mutable absl::Mutex mu_;
  Wal* wal_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t first_lsn_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<LogRecord> records_ ABSL_GUARDED_BY(mu_);  // from first_lsn_ on
};

// A server process on the shared disk: its view of the files, its Wal and its TaskStore (logging
// to `log`, or to the Wal when `log` is null). The Wal is stopped first, then the store, the Wal,
// the timers and the files are destroyed.
struct Server {
  Server(FakeFileSystem& disk, Clock& clock, WalSettings settings, HistoryLog* log = nullptr)
      : fs(disk) {
    wal = std::make_unique<Wal>(OptionsFor(fs, settings));
    store = std::make_unique<TaskStore>(clock, timers, TaskStore::Options{.retention = kRetention},
                                        log != nullptr ? static_cast<TaskLog*>(log) : wal.get());
  }

  // The Wal's threads stop before the store they snapshot goes.
  ~Server() { Stop(); }
  void Stop() {
    if (wal != nullptr) wal->Stop();
  }

  // Recovers, starts writing and arms the timers, as the server starts.
  absl::StatusOr<RecoveryStats> Start() {
    absl::StatusOr<RecoveryStats> stats = wal->Recover(*store);
    if (!stats.ok()) return stats;
    if (absl::Status s = wal->StartWriting(); !s.ok()) return s;
    store->FinishRecovery();
    return stats;
  }

  // Delivers every timer due at `now`, as the tick thread does.
  void FireDue(absl::Time now) {
    for (;;) {
      std::vector<uint64_t> cookies = timers.FireDue(now);
      if (cookies.empty()) return;
      for (uint64_t cookie : cookies) store->OnTimer(cookie);
    }
  }

  ProcessFs fs;
  FakeTimers timers;
  std::unique_ptr<Wal> wal;
  std::unique_ptr<TaskStore> store;
};

// Waits until `lsn` is durable. False after kPatience.
bool AwaitDurable(Wal& wal, uint64_t lsn) {
  auto done = std::make_shared<absl::Notification>();
  wal.WhenDurable(lsn, [done] { done->Notify(); });
  return done->WaitForNotificationWithTimeout(kPatience);
}

// A put of a SCHEDULED task: the smallest record that Replay() accepts, with `padding` more bytes
// of payload.
LogRecord PutOf(absl::string_view task_id, size_t padding = 0) {
  LogRecord record;
  store::v1::TaskPut* put = record.mutable_put();
  put->set_task_id(std::string(task_id));
  put->set_queue("q");
  put->set_payload(absl::StrCat("payload of ", task_id, std::string(padding, 'p')));
  put->set_create_time_unix_nanos(absl::ToUnixNanos(kStart));
  put->set_first_due_time_unix_nanos(absl::ToUnixNanos(kStart + absl::Hours(1)));
  put->mutable_state()->set_task_id(std::string(task_id));
  put->mutable_state()->set_state(static_cast<int32_t>(TaskState::kScheduled));
  put->mutable_state()->set_due_time_unix_nanos(absl::ToUnixNanos(kStart + absl::Hours(1)));
  return record;
}

std::string TaskName(int i) { return absl::StrFormat("task-%04d", i); }

// What a log file holds, read with LogReader.
struct FileRecords {
  std::vector<LogRecord> records;
  std::vector<uint64_t> offsets;
  LogReadResult result;
};
FileRecords ReadLogFile(FileSystem& fs, const std::string& path) {
  FileRecords out;
  absl::StatusOr<std::unique_ptr<SequentialFile>> file = fs.NewSequentialFile(path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return out;
  LogReader reader(**file, path);
  std::string bytes;
  uint64_t offset;
  while (reader.ReadRecord(&bytes, &offset)) {
    EXPECT_TRUE(out.records.emplace_back().ParseFromString(bytes)) << path << " offset " << offset;
    out.offsets.push_back(offset);
  }
  out.result = reader.result();
  return out;
}

// The names of the segments in kDir, in order.
std::vector<std::string> Segments(FileSystem& fs) {
  absl::StatusOr<std::vector<std::string>> names = fs.ListDir(kDir);
  EXPECT_TRUE(names.ok()) << names.status();
  std::vector<std::string> segments;
  if (!names.ok()) return segments;
  for (const std::string& name : *names) {
    if (absl::StartsWith(name, "log-") && absl::EndsWith(name, ".wal")) segments.push_back(name);
  }
  return segments;
}

// Replaces the contents of `path` on the disk, durably.
void WriteFile(FakeFileSystem& disk, const std::string& path, absl::string_view contents) {
  absl::StatusOr<std::unique_ptr<WritableFile>> file = disk.NewWritableFile(path);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE((*file)->Append(contents).ok());
  ASSERT_TRUE((*file)->Sync().ok());
  ASSERT_TRUE((*file)->Close().ok());
  ASSERT_TRUE(disk.SyncDir(kDir).ok());
}
std::string ReadFile(FakeFileSystem& disk, const std::string& path) {
  absl::StatusOr<std::string> contents = disk.ReadFileToString(path);
  EXPECT_TRUE(contents.ok()) << contents.status();
  return contents.ok() ? *contents : std::string();
}

// Every task of `store` as a snapshot would write it (a TaskPut with payload, headers and lease
// token), by task id, READY read as SCHEDULED (READY is not logged: recovery derives it from the
// due time).
std::map<std::string, LogRecord> Tasks(TaskStore& store) {
  std::vector<LogRecord> puts;
  size_t cursor = 0;
  while (store.SnapshotChunk(&cursor, 64, &puts)) {
  }
  std::map<std::string, LogRecord> tasks;
  for (LogRecord& record : puts) {
    store::v1::TaskUpdate* state = record.mutable_put()->mutable_state();
    if (state->state() == static_cast<int32_t>(TaskState::kReady)) {
      state->set_state(static_cast<int32_t>(TaskState::kScheduled));
    }
    std::string id = record.put().task_id();
    tasks.emplace(std::move(id), std::move(record));
  }
  return tasks;
}
std::map<std::string, std::string> Contents(TaskStore& store) {
  std::map<std::string, std::string> contents;
  for (const auto& [id, put] : Tasks(store)) contents[id] = put.ShortDebugString();
  return contents;
}

// Random operations on a TaskStore: every mutator, with valid and invalid arguments, and the
// passing of time with the timers it fires. Deterministic for a seed.
class Workload {
 public:
  Workload(uint64_t seed, FakeClock& clock) : rng_(seed), clock_(clock) {}

  // One operation; returns the LSN a client would wait for (0: none, e.g. a refused call, or the
  // passing of time, whose changes no client waits for).
  uint64_t Step(Server& server) {
    TaskStore& store = *server.store;
    uint64_t lsn = 0;
    const int dice = Uniform(0, 99);
    if (dice < 28 || ids_.empty()) {
      ScheduleNew(store, TaskName(next_id_++), &lsn);
    } else if (dice < 32) {
      // An id in use (an idempotent repeat, or ALREADY_EXISTS), or one forgotten (a new task).
      const std::string& id = PickId();
      if (Uniform(0, 1) == 0) {
        (void)store.Schedule(Task(id, payloads_[id]), &lsn);
      } else {
        ScheduleNew(store, id, &lsn);
      }
    } else if (dice < 39) {
      (void)store.Cancel(PickId(), &lsn);
    } else if (dice < 46) {
      (void)store.Reschedule(PickId(), clock_.Now() + absl::Milliseconds(Uniform(0, 3000)), &lsn);
    } else if (dice < 58) {
      for (LeasedTask& leased : store.Lease(Uniform(0, 1) == 0 ? "alpha" : "beta", Uniform(1, 3),
                                            absl::Milliseconds(Uniform(500, 3000)), &lsn)) {
        leases_.emplace_back(std::move(leased.task_id), std::move(leased.lease_token));
      }
      if (leases_.size() > 64) leases_.erase(leases_.begin(), leases_.begin() + 32);
    } else if (dice < 68) {
      if (!leases_.empty()) {
        const auto [id, token] = TakeLease();
        (void)store.Ack(id, token, &lsn);
      }
    } else if (dice < 75) {
      if (!leases_.empty()) {
        const auto [id, token] = TakeLease();
        std::optional<absl::Duration> delay;
        if (Uniform(0, 1) == 0) delay = absl::Milliseconds(Uniform(0, 2000));
        (void)store.Nack(id, token, delay, absl::StrCat("error ", Uniform(0, 999)), &lsn);
      }
    } else if (dice < 80) {
      if (!leases_.empty()) {
        const auto& [id, token] = leases_[Uniform(0, static_cast<int>(leases_.size()) - 1)];
        (void)store.ExtendLease(id, token, absl::Milliseconds(Uniform(500, 3000)), &lsn);
      }
    } else {
      clock_.Advance(absl::Milliseconds(Uniform(0, 1500)));
      server.FireDue(clock_.Now());
    }
    return lsn;
  }

  // Every task id scheduled so far (some may be gone).
  const std::vector<std::string>& ids() const { return ids_; }

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  const std::string& PickId() { return ids_[Uniform(0, static_cast<int>(ids_.size()) - 1)]; }

  std::pair<std::string, std::string> TakeLease() {
    const size_t i = static_cast<size_t>(Uniform(0, static_cast<int>(leases_.size()) - 1));
    std::pair<std::string, std::string> lease = std::move(leases_[i]);
    leases_.erase(leases_.begin() + static_cast<ptrdiff_t>(i));
    return lease;
  }

  // Mostly small payloads; some of a few KiB; a few longer than a log block (32 KiB), which the
  // log splits into fragments.
  std::string Payload() {
    const int dice = Uniform(0, 99);
    const int size = dice < 90   ? Uniform(0, 100)
                     : dice < 99 ? Uniform(100, 3000)
                                 : Uniform(33000, 40000);
    std::string payload(static_cast<size_t>(size), 'x');
    for (char& c : payload) c = static_cast<char>('a' + Uniform(0, 25));
    return payload;
  }

  NewTask Task(const std::string& id, const std::string& payload) {
    NewTask task;
    task.queue = absl::EndsWith(id, "0") || absl::EndsWith(id, "5") ? "beta" : "alpha";
    task.task_id = id;
    task.payload = payload;
    task.headers = {{"attempt-of", id}};
    task.due_time = clock_.Now() + absl::Milliseconds(Uniform(-1000, 4000));
    task.retry_policy = {.max_attempts = Uniform(1, 3),
                         .min_backoff = absl::Milliseconds(200),
                         .max_backoff = absl::Seconds(1)};
    return task;
  }

  void ScheduleNew(TaskStore& store, const std::string& id, uint64_t* lsn) {
    std::string payload = Payload();
    if (store.Schedule(Task(id, payload), lsn).ok() && *lsn != 0) {
      if (!payloads_.contains(id)) ids_.push_back(id);
      payloads_[id] = std::move(payload);
    }
  }

  std::mt19937_64 rng_;
  FakeClock& clock_;
  int next_id_ = 0;
  std::vector<std::string> ids_;
  std::map<std::string, std::string> payloads_;
  std::vector<std::pair<std::string, std::string>> leases_;  // (task id, lease token)
};

class WalTest : public ::testing::Test {
 protected:
  // A store for Recover() to fill, with timers of its own.
  struct Recovered {
    explicit Recovered(Clock& clock) : store(clock, timers, {.retention = kRetention}) {}
    FakeTimers timers;
    TaskStore store;
  };

  // Recovers kDir with a new Wal (writing nothing), into a new store.
  absl::StatusOr<RecoveryStats> RecoverInto(Recovered& recovered, WalSettings settings = {}) {
    Wal wal(OptionsFor(disk_, settings));
    return wal.Recover(recovered.store);
  }

  FakeClock clock_{kStart};
  FakeFileSystem disk_;
};

// ---------------------------------------------------------------------------------------------
// 1. Group commit.

// Records appended by several threads while the writer holds a commit get the LSNs 1..n, all reach
// the file in LSN order, with one sync for the whole waiting batch; every WhenDurable callback runs
// once, after that sync (durable_lsn() covers it), on the writer thread, in LSN order.
TEST_F(WalTest, GroupCommitSyncsEachBatchOnceAndCallsBackInLsnOrder) {
  Server server(disk_, clock_, {});
  ASSERT_TRUE(server.Start().ok());
  server.fs.HoldCommits(true);
  const std::thread::id test_thread = std::this_thread::get_id();

  absl::Mutex mu;
  std::vector<uint64_t> called_back;  // LSNs, in callback order
  bool early = false;                 // a callback ran before durable_lsn() covered it
  bool on_test_thread = false;
  auto callback = [&](uint64_t lsn) {
    return [&, lsn] {
      const bool durable = server.wal->durable_lsn() >= lsn;
      absl::MutexLock lock(&mu);
      early = early || !durable;
      on_test_thread = on_test_thread || std::this_thread::get_id() == test_thread;
      called_back.push_back(lsn);
    };
  };

  // The writer takes the first record alone and holds its commit before the sync.
  const uint64_t first = server.wal->Append(PutOf("first"));
  ASSERT_EQ(first, 1u);
  server.wal->WhenDurable(first, callback(first));
  ASSERT_TRUE(server.fs.AwaitHeld(1));

  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  std::vector<std::vector<std::pair<uint64_t, std::string>>> appended(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string id = TaskName(t * kPerThread + i);
        const uint64_t lsn = server.wal->Append(PutOf(id));
        server.wal->WhenDurable(lsn, callback(lsn));
        appended[t].emplace_back(lsn, id);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(called_back.empty()) << "a callback ran before any sync";
  }
  EXPECT_EQ(server.wal->durable_lsn(), 0u);
  EXPECT_EQ(server.wal->last_lsn(), uint64_t{1 + kThreads * kPerThread});
  EXPECT_EQ(disk_.stats().syncs, 0);

  // Each thread saw its own LSNs increase; together they are 2..n.
  std::map<uint64_t, std::string> id_by_lsn = {{first, "first"}};
  for (const auto& mine : appended) {
    for (size_t i = 1; i < mine.size(); ++i) EXPECT_LT(mine[i - 1].first, mine[i].first);
    for (const auto& [lsn, id] : mine) EXPECT_TRUE(id_by_lsn.emplace(lsn, id).second) << lsn;
  }
  ASSERT_EQ(id_by_lsn.size(), size_t{1 + kThreads * kPerThread});
  EXPECT_EQ(id_by_lsn.begin()->first, 1u);
  EXPECT_EQ(id_by_lsn.rbegin()->first, uint64_t{1 + kThreads * kPerThread});

  // Let the held commit go: its sync, then one more sync for everything that waited.
  server.fs.HoldCommits(false);
  const uint64_t last = server.wal->last_lsn();
  ASSERT_TRUE(AwaitDurable(*server.wal, last));
  EXPECT_EQ(disk_.stats().syncs, 2) << "one sync for the first record, one for the batch after it";
  {
    // durable_lsn moves before the writer thread runs the callbacks: wait for them too.
    absl::MutexLock lock(&mu);
    auto all_called = [&]()
                          ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return called_back.size() >= last; };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_called), absl::Seconds(30)));
    std::vector<uint64_t> expected(last);
    for (uint64_t lsn = 1; lsn <= last; ++lsn) expected[lsn - 1] = lsn;
    EXPECT_EQ(called_back, expected) << "each callback once, in LSN order";
    EXPECT_FALSE(early);
    EXPECT_FALSE(on_test_thread) << "callbacks of a group commit run on the writer thread";
  }

  // A callback for an LSN already durable runs at once, on the caller's thread; so does one for 0.
  for (uint64_t lsn : {uint64_t{0}, uint64_t{1}, last}) {
    std::optional<std::thread::id> ran_on;
    server.wal->WhenDurable(lsn, [&] { ran_on = std::this_thread::get_id(); });
    ASSERT_TRUE(ran_on.has_value()) << lsn;
    EXPECT_EQ(*ran_on, test_thread) << lsn;
  }

  // The file holds the records in LSN order: record i is the one Append() answered i.
  const FileRecords file = ReadLogFile(disk_, SegmentPath(1));
  EXPECT_EQ(file.result.end, LogReadResult::kClean);
  ASSERT_EQ(file.records.size(), id_by_lsn.size());
  for (size_t i = 0; i < file.records.size(); ++i) {
    EXPECT_EQ(file.records[i].put().task_id(), id_by_lsn[i + 1]) << "LSN " << i + 1;
  }
}

// Under concurrency without any hold, a sync covers many records: fewer syncs than records, every
// record durable and called back once.
TEST_F(WalTest, ConcurrentAppendsShareSyncs) {
  Server server(disk_, clock_, {});
  ASSERT_TRUE(server.Start().ok());
  constexpr int kThreads = 8;
  constexpr int kPerThread = 200;
  std::atomic<int> callbacks{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const uint64_t lsn = server.wal->Append(PutOf(TaskName(t * kPerThread + i)));
        server.wal->WhenDurable(lsn, [&] { ++callbacks; });
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_TRUE(AwaitDurable(*server.wal, kThreads * kPerThread));
  EXPECT_EQ(callbacks.load(), kThreads * kPerThread);
  EXPECT_LT(disk_.stats().syncs, kThreads * kPerThread);
  EXPECT_EQ(ReadLogFile(disk_, SegmentPath(1)).records.size(), size_t{kThreads * kPerThread});
}

// With sync = false (--fsync=never) a group commit flushes and never syncs: the records survive a
// crash of the process, not of the machine.
TEST_F(WalTest, WithoutSyncFlushesInsteadOfSyncing) {
  for (const CrashMode& mode : {CrashMode::ProcessCrash(), CrashMode::PowerLoss()}) {
    SCOPED_TRACE(CrashModeName(mode));
    FakeFileSystem disk;
    {
      Server server(disk, clock_, {.sync = false});
      ASSERT_TRUE(server.Start().ok());
      const int64_t flushes_before = disk.stats().flushes;
      for (int i = 0; i < 10; ++i) {
        ASSERT_TRUE(AwaitDurable(*server.wal, server.wal->Append(PutOf(TaskName(i)))));
      }
      EXPECT_EQ(disk.stats().syncs, 0);
      EXPECT_GE(disk.stats().flushes - flushes_before, 10);
      // Readers see the records: the operating system has them.
      EXPECT_EQ(ReadLogFile(disk, SegmentPath(1)).records.size(), 10u);
      server.fs.Crash(mode);
    }
    Recovered recovered(clock_);
    Wal wal(OptionsFor(disk));
    absl::StatusOr<RecoveryStats> stats = wal.Recover(recovered.store);
    ASSERT_TRUE(stats.ok()) << stats.status();
    const uint64_t expected = mode.data == CrashMode::UnsyncedData::kKeep ? 10 : 0;
    EXPECT_EQ(stats->records, expected);
    EXPECT_EQ(recovered.store.size(), expected);
  }
}

// A segment is closed once it holds segment_bytes or more, and the next one is named after its
// first LSN (log-<20 digits>.wal); recovery reads them all in order, and the next start opens a
// new segment at the next LSN.
TEST_F(WalTest, SegmentsRotateAtSegmentBytesAndRecoverInOrder) {
  constexpr uint64_t kSegmentBytes = 256;
  constexpr int kRecords = 40;
  {
    Server server(disk_, clock_, {.segment_bytes = kSegmentBytes});
    ASSERT_TRUE(server.Start().ok());
    for (int i = 0; i < kRecords; ++i) {  // one record per commit
      ASSERT_TRUE(AwaitDurable(*server.wal, server.wal->Append(PutOf(TaskName(i)))));
    }
  }
  const std::vector<std::string> segments = Segments(disk_);
  ASSERT_GE(segments.size(), 3u);
  EXPECT_EQ(segments.front(), "log-00000000000000000001.wal");
  uint64_t next_lsn = 1;
  for (size_t i = 0; i < segments.size(); ++i) {
    SCOPED_TRACE(segments[i]);
    EXPECT_EQ(segments[i], SegmentName(next_lsn));
    const std::string path = absl::StrCat(kDir, "/", segments[i]);
    const FileRecords file = ReadLogFile(disk_, path);
    EXPECT_EQ(file.result.end, LogReadResult::kClean);
    ASSERT_FALSE(file.records.empty());
    EXPECT_EQ(file.records.front().put().task_id(), TaskName(static_cast<int>(next_lsn - 1)));
    const uint64_t size = *disk_.FileSize(path);
    if (i + 1 < segments.size()) {
      // Closed by the first commit that found it at segment_bytes or more: its last record
      // started below the limit and ended at or above it.
      EXPECT_GE(size, kSegmentBytes);
      EXPECT_LT(file.offsets.back(), kSegmentBytes);
    }
    next_lsn += file.records.size();
  }
  EXPECT_EQ(next_lsn, uint64_t{kRecords + 1});

  Server restarted(disk_, clock_, {.segment_bytes = kSegmentBytes});
  absl::StatusOr<RecoveryStats> stats = restarted.Start();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->segments, segments.size());
  EXPECT_EQ(stats->records, uint64_t{kRecords});
  EXPECT_EQ(stats->next_lsn, uint64_t{kRecords + 1});
  EXPECT_EQ(stats->torn_tails, 0u);
  EXPECT_EQ(restarted.store->size(), size_t{kRecords});
  for (int i = 0; i < kRecords; ++i) EXPECT_TRUE(restarted.store->Get(TaskName(i)).ok()) << i;
  EXPECT_TRUE(disk_.Exists(SegmentPath(kRecords + 1)));
  EXPECT_EQ(restarted.wal->Append(PutOf("after restart")), uint64_t{kRecords + 1});
}

// Stop() writes and syncs what is pending and runs its callbacks before it returns.
TEST_F(WalTest, StopWritesAndSyncsWhatIsPending) {
  constexpr int kRecords = 100;
  std::atomic<int> callbacks{0};
  {
    Server server(disk_, clock_, {});
    ASSERT_TRUE(server.Start().ok());
    server.fs.HoldCommits(true);
    for (int i = 0; i < kRecords; ++i) {
      server.wal->WhenDurable(server.wal->Append(PutOf(TaskName(i))), [&] { ++callbacks; });
    }
    ASSERT_TRUE(server.fs.AwaitHeld(1));
    EXPECT_EQ(callbacks.load(), 0);
    server.fs.HoldCommits(false);
    server.wal->Stop();
    EXPECT_EQ(callbacks.load(), kRecords);
    EXPECT_EQ(server.wal->durable_lsn(), uint64_t{kRecords});
  }
  disk_.SimulateCrash(CrashMode::PowerLoss());
  Recovered recovered(clock_);
  absl::StatusOr<RecoveryStats> stats = RecoverInto(recovered);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->records, uint64_t{kRecords});
}

// ---------------------------------------------------------------------------------------------
// 2. Recovery.

// A store recovered from the files answers GetStatus for every task exactly as the live store did
// (READY read as SCHEDULED, as task_store.h documents), after a few hundred random operations.
TEST_F(WalTest, RecoveredStoreEqualsLiveStore) {
  Workload workload(/*seed=*/7, clock_);
  std::vector<std::pair<std::string, TaskInfo>> live;
  size_t live_size = 0;
  uint64_t last_lsn = 0;
  {
    Server server(disk_, clock_, {.segment_bytes = 8 << 10});
    ASSERT_TRUE(server.Start().ok());
    for (int i = 0; i < 600; ++i) workload.Step(server);
    last_lsn = server.wal->last_lsn();
    ASSERT_GT(last_lsn, 300u);
    ASSERT_TRUE(AwaitDurable(*server.wal, last_lsn));
    for (const std::string& id : workload.ids()) {
      absl::StatusOr<TaskInfo> info = server.store->Get(id);
      if (!info.ok()) continue;
      if (info->state == TaskState::kReady) info->state = TaskState::kScheduled;
      live.emplace_back(id, *info);
    }
    live_size = server.store->size();
    server.fs.Crash(CrashMode::PowerLoss());
  }
  ASSERT_EQ(live.size(), live_size);
  Recovered recovered(clock_);
  absl::StatusOr<RecoveryStats> stats = RecoverInto(recovered);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->records, last_lsn);
  EXPECT_EQ(stats->next_lsn, last_lsn + 1);
  EXPECT_EQ(recovered.store.size(), live_size);
  for (const auto& [id, info] : live) {
    absl::StatusOr<TaskInfo> got = recovered.store.Get(id);
    ASSERT_TRUE(got.ok()) << id << ": " << got.status();
    EXPECT_EQ(Describe(*got), Describe(info));
  }
}

// An empty (or missing) directory recovers to an empty store; the first segment starts at LSN 1.
TEST_F(WalTest, EmptyDirectoryRecoversEmpty) {
  Server server(disk_, clock_, {});
  absl::StatusOr<RecoveryStats> stats = server.Start();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->records, 0u);
  EXPECT_EQ(stats->segments, 0u);
  EXPECT_EQ(stats->torn_tails, 0u);
  EXPECT_EQ(stats->next_lsn, 1u);
  EXPECT_EQ(server.store->size(), 0u);
  EXPECT_EQ(server.wal->durable_lsn(), 0u);
  EXPECT_EQ(server.wal->last_lsn(), 0u);
  EXPECT_EQ(Segments(disk_), std::vector<std::string>{SegmentName(1)});
  EXPECT_EQ(server.wal->Append(PutOf("first")), 1u);
}

// Writes `n` records named TaskName(first..first+n-1) (with `padding` bytes more of payload each),
// one commit each, through a new server (which starts a new segment), and stops it.
void WriteRecords(FakeFileSystem& disk, Clock& clock, int first, int n, size_t padding = 0) {
  Server server(disk, clock, {});
  absl::StatusOr<RecoveryStats> stats = server.Start();
  ASSERT_TRUE(stats.ok()) << stats.status();
  for (int i = first; i < first + n; ++i) {
    ASSERT_TRUE(AwaitDurable(*server.wal, server.wal->Append(PutOf(TaskName(i), padding))));
  }
}

// A record cut in half at the end of the last segment (what a crash leaves) is cut off: the file
// ends at the last complete record, the stats say so, and the log goes on cleanly after it.
TEST_F(WalTest, TornTailOfLastSegmentIsTruncatedAndTheLogGoesOn) {
  ASSERT_NO_FATAL_FAILURE(WriteRecords(disk_, clock_, 0, 6));
  const std::string path = SegmentPath(1);
  const FileRecords file = ReadLogFile(disk_, path);
  ASSERT_EQ(file.records.size(), 6u);
  const std::string contents = ReadFile(disk_, path);
  const uint64_t valid_end = file.offsets[5];  // the sixth record is torn
  const uint64_t torn = (contents.size() - valid_end) / 2;
  ASSERT_GT(torn, 0u);
  WriteFile(disk_, path, contents.substr(0, valid_end + torn));

  {
    Server server(disk_, clock_, {});
    absl::StatusOr<RecoveryStats> stats = server.Start();
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->records, 5u);
    EXPECT_EQ(stats->torn_tails, 1u);
    EXPECT_EQ(stats->torn_bytes, torn);
    EXPECT_EQ(stats->skipped_bytes, 0u);
    EXPECT_EQ(stats->next_lsn, 6u);
    EXPECT_EQ(*disk_.FileSize(path), valid_end);
    EXPECT_EQ(server.store->size(), 5u);
    EXPECT_FALSE(server.store->Get(TaskName(5)).ok());
    for (int i = 10; i < 13; ++i) {
      ASSERT_TRUE(AwaitDurable(*server.wal, server.wal->Append(PutOf(TaskName(i)))));
    }
  }
  // The truncation is durable, and the records after it are in a clean new segment.
  disk_.SimulateCrash(CrashMode::PowerLoss());
  Recovered recovered(clock_);
  absl::StatusOr<RecoveryStats> stats = RecoverInto(recovered);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->torn_tails, 0u);
  EXPECT_EQ(stats->torn_bytes, 0u);
  EXPECT_EQ(stats->records, 8u);
  EXPECT_EQ(stats->segments, 2u);
  EXPECT_EQ(stats->next_lsn, 9u);
  for (int i : {0, 1, 2, 3, 4, 10, 11, 12}) EXPECT_TRUE(recovered.store.Get(TaskName(i)).ok()) << i;
}

// Three segments of kPerSegment records of about 1 KB each (40 KB: the second log block holds the
// last ones): LSNs 1-40, 41-80 and 81-120, records TaskName(0..119).
class WalCorruptionTest : public WalTest {
 protected:
  static constexpr int kPerSegment = 40;
  static constexpr int kRecords = 3 * kPerSegment;

  void SetUp() override {
    for (int part = 0; part < 3; ++part) {
      ASSERT_NO_FATAL_FAILURE(
          WriteRecords(disk_, clock_, part * kPerSegment, kPerSegment, /*padding=*/900));
    }
    ASSERT_EQ(Segments(disk_),
              (std::vector<std::string>{SegmentName(1), SegmentName(41), SegmentName(81)}));
  }

  // Flips a bit of the data of the `record`-th record (from 0) of the segment that starts at LSN
  // `first_lsn`, durably; returns the record's offset.
  uint64_t FlipBitInRecord(uint64_t first_lsn, size_t record) {
    const std::string path = SegmentPath(first_lsn);
    const FileRecords file = ReadLogFile(disk_, path);
    EXPECT_GT(file.records.size(), record);
    EXPECT_GT(file.offsets.back(), kLogBlockSize) << "the segment has a second block";
    std::string contents = ReadFile(disk_, path);
    const uint64_t offset = file.offsets[record];
    contents[offset + kLogHeaderSize + 3] ^= 0x10;
    WriteFile(disk_, path, contents);
    return offset;
  }

  // The records (by index in the segment) that skip_corruption will keep after
  // FlipBitInRecord(first_lsn, k) (to be called before it):
  // those before it, and those that start in a later block (the rest of the damaged block is
  // dropped, and the reader resynchronises at the next).
  std::vector<bool> KeptAfterFlip(uint64_t first_lsn, size_t k) {
    const FileRecords file = ReadLogFile(disk_, SegmentPath(first_lsn));
    std::vector<bool> kept;
    for (size_t i = 0; i < file.offsets.size(); ++i) {
      kept.push_back(i < k || file.offsets[i] / kLogBlockSize > file.offsets[k] / kLogBlockSize);
    }
    return kept;
  }
};

// A record broken in the middle of a segment that is not the last: DATA_LOSS naming the file and
// the offset.
TEST_F(WalCorruptionTest, CorruptRecordInEarlierSegmentStopsTheStart) {
  const uint64_t offset = FlipBitInRecord(41, 1);
  Recovered recovered(clock_);
  absl::StatusOr<RecoveryStats> stats = RecoverInto(recovered);
  ASSERT_EQ(stats.status().code(), absl::StatusCode::kDataLoss) << stats.status();
  EXPECT_TRUE(absl::StrContains(stats.status().message(), SegmentPath(41))) << stats.status();
  EXPECT_TRUE(absl::StrContains(stats.status().message(), absl::StrCat("offset ", offset)))
      << stats.status();
}

// The same in the last segment: corruption with records after it is not a torn tail.
TEST_F(WalCorruptionTest, CorruptRecordInLastSegmentStopsTheStart) {
  const uint64_t offset = FlipBitInRecord(81, 1);
  Recovered recovered(clock_);
  absl::StatusOr<RecoveryStats> stats = RecoverInto(recovered);
  ASSERT_EQ(stats.status().code(), absl::StatusCode::kDataLoss) << stats.status();
  EXPECT_TRUE(absl::StrContains(stats.status().message(), SegmentPath(81))) << stats.status();
  EXPECT_TRUE(absl::StrContains(stats.status().message(), absl::StrCat("offset ", offset)))
      << stats.status();
}

// A torn record at the end of a segment that is not the last is not what a crash leaves:
// DATA_LOSS naming the file and the offset, and no file is changed.
TEST_F(WalCorruptionTest, TornTailOfEarlierSegmentStopsTheStart) {
  const std::string path = SegmentPath(41);
  const FileRecords file = ReadLogFile(disk_, path);
  const std::string contents = ReadFile(disk_, path);
  const uint64_t offset = file.offsets.back();
  WriteFile(disk_, path, contents.substr(0, offset + 5));
  Recovered recovered(clock_);
  absl::StatusOr<RecoveryStats> stats = RecoverInto(recovered);
  ASSERT_EQ(stats.status().code(), absl::StatusCode::kDataLoss) << stats.status();
  EXPECT_TRUE(absl::StrContains(stats.status().message(), path)) << stats.status();
  EXPECT_TRUE(absl::StrContains(stats.status().message(), absl::StrCat("offset ", offset)))
      << stats.status();
  EXPECT_EQ(*disk_.FileSize(path), offset + 5);
}

// Garbage after the last record of an earlier segment (no record lost): DATA_LOSS without
// skip_corruption; with it, the garbage is cut off and every record is there.
TEST_F(WalCorruptionTest, GarbageAfterEarlierSegmentSkippedOnlyWithSkipCorruption) {
  const std::string path = SegmentPath(41);
  const std::string contents = ReadFile(disk_, path);
  WriteFile(disk_, path, contents + std::string(20, '\x5a'));
  {
    Recovered recovered(clock_);
    absl::StatusOr<RecoveryStats> stats = RecoverInto(recovered);
    ASSERT_EQ(stats.status().code(), absl::StatusCode::kDataLoss) << stats.status();
    EXPECT_TRUE(absl::StrContains(stats.status().message(), path)) << stats.status();
    EXPECT_TRUE(
        absl::StrContains(stats.status().message(), absl::StrCat("offset ", contents.size())))
        << stats.status();
  }
  Recovered recovered(clock_);
  absl::StatusOr<RecoveryStats> stats = RecoverInto(recovered, {.skip_corruption = true});
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->records, uint64_t{kRecords});
  EXPECT_EQ(stats->next_lsn, uint64_t{kRecords + 1});
  EXPECT_EQ(recovered.store.size(), size_t{kRecords});
}

// With skip_corruption, a corrupt record in an earlier segment is skipped with the rest of its
// block: the start succeeds with every other record and counts the bytes it skipped.
TEST_F(WalCorruptionTest, SkipCorruptionSkipsCorruptRecordInEarlierSegment) {
  const std::vector<bool> kept = KeptAfterFlip(41, 1);
  FlipBitInRecord(41, 1);
  Recovered recovered(clock_);
  absl::StatusOr<RecoveryStats> stats = RecoverInto(recovered, {.skip_corruption = true});
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GT(stats->skipped_bytes, 0u);
  EXPECT_EQ(stats->torn_tails, 0u);
  EXPECT_EQ(stats->next_lsn, uint64_t{kRecords + 1}) << "numbering resumes at the next segment";
  for (int i = 0; i < kRecords; ++i) {
    const bool expected = i < 40 || i >= 80 || kept[static_cast<size_t>(i - 40)];
    EXPECT_EQ(recovered.store.Get(TaskName(i)).ok(), expected) << TaskName(i);
  }
}

// With skip_corruption, a corrupt record in the last segment is skipped too.
TEST_F(WalCorruptionTest, SkipCorruptionSkipsCorruptRecordInLastSegment) {
  const std::vector<bool> kept = KeptAfterFlip(81, 1);
  FlipBitInRecord(81, 1);
  Recovered recovered(clock_);
  absl::StatusOr<RecoveryStats> stats = RecoverInto(recovered, {.skip_corruption = true});
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GT(stats->skipped_bytes, 0u);
  EXPECT_EQ(stats->torn_tails, 0u);
  for (int i = 0; i < kRecords; ++i) {
    const bool expected = i < 80 || kept[static_cast<size_t>(i - 80)];
    EXPECT_EQ(recovered.store.Get(TaskName(i)).ok(), expected) << TaskName(i);
  }
}

// A missing segment in the middle: DATA_LOSS naming the segment after the gap. (With
// skip_corruption, numbering resumes at the next segment: the start succeeds without the missing
// records.)
TEST_F(WalCorruptionTest, MissingMiddleSegmentStopsTheStart) {
  ASSERT_TRUE(disk_.Remove(SegmentPath(41)).ok());
  ASSERT_TRUE(disk_.SyncDir(kDir).ok());
  {
    Recovered recovered(clock_);
    absl::StatusOr<RecoveryStats> stats = RecoverInto(recovered);
    ASSERT_EQ(stats.status().code(), absl::StatusCode::kDataLoss) << stats.status();
    EXPECT_TRUE(absl::StrContains(stats.status().message(), SegmentPath(81))) << stats.status();
    EXPECT_TRUE(absl::StrContains(stats.status().message(), "end at record 40")) << stats.status();
  }
  Recovered recovered(clock_);
  absl::StatusOr<RecoveryStats> stats = RecoverInto(recovered, {.skip_corruption = true});
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->records, 80u);
  EXPECT_EQ(stats->next_lsn, uint64_t{kRecords + 1});
  EXPECT_EQ(recovered.store.size(), 80u);
  EXPECT_FALSE(recovered.store.Get(TaskName(40)).ok());
}

// A record whose framing is valid but whose bytes are not a LogRecord (or are one that Replay()
// refuses): DATA_LOSS naming the file and the record's offset; skipped with skip_corruption.
TEST_F(WalTest, UnparsableRecordStopsTheStart) {
  for (const std::string& bad : {std::string("\x0a\xff"), std::string()}) {
    SCOPED_TRACE(absl::StrCat("bad record of ", bad.size(), " bytes"));
    FakeFileSystem disk;
    ASSERT_TRUE(disk.CreateDir(kDir).ok());
    uint64_t bad_offset = 0;
    {
      absl::StatusOr<std::unique_ptr<WritableFile>> file = disk.NewWritableFile(SegmentPath(1));
      ASSERT_TRUE(file.ok());
      LogWriter writer(**file);
      ASSERT_TRUE(writer.AddRecord(PutOf("a").SerializeAsString()).ok());
      bad_offset = writer.offset();
      ASSERT_TRUE(writer.AddRecord(bad).ok());
      ASSERT_TRUE(writer.AddRecord(PutOf("b").SerializeAsString()).ok());
      ASSERT_TRUE((*file)->Sync().ok());
      ASSERT_TRUE(disk.SyncDir(kDir).ok());
    }
    {
      Recovered recovered(clock_);
      Wal wal(OptionsFor(disk));
      absl::StatusOr<RecoveryStats> stats = wal.Recover(recovered.store);
      ASSERT_EQ(stats.status().code(), absl::StatusCode::kDataLoss) << stats.status();
      EXPECT_TRUE(absl::StrContains(stats.status().message(),
                                    absl::StrCat(SegmentPath(1), " offset ", bad_offset)))
          << stats.status();
    }
    Recovered recovered(clock_);
    Wal wal(OptionsFor(disk, {.skip_corruption = true}));
    absl::StatusOr<RecoveryStats> stats = wal.Recover(recovered.store);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->skipped_bytes, bad.size());
    EXPECT_TRUE(recovered.store.Get("a").ok());
    EXPECT_TRUE(recovered.store.Get("b").ok());
  }
}

// A crash of the process (not the machine) after a commit's write and before its sync leaves the
// records in the operating system's cache: recovery reads them, and the next server builds on
// them (its first segment starts after them). A power loss later must not take them away from
// under the records acknowledged after them: the next start must find those.
TEST_F(WalTest, RecoveredRecordsStayDurableAfterLaterPowerLoss) {
  {
    Server server(disk_, clock_, {});
    ASSERT_TRUE(server.Start().ok());
    ASSERT_TRUE(AwaitDurable(*server.wal, server.wal->Append(PutOf("synced"))));
    server.fs.HoldCommits(true);
    server.wal->Append(PutOf("written, not synced"));
    ASSERT_TRUE(server.fs.AwaitHeld(1));
    server.fs.Crash(CrashMode::ProcessCrash());  // kill -9: the OS keeps the written data
  }
  uint64_t acknowledged = 0;
  {
    Server server(disk_, clock_, {});
    absl::StatusOr<RecoveryStats> stats = server.Start();
    ASSERT_TRUE(stats.ok()) << stats.status();
    ASSERT_EQ(stats->records, 2u) << "the written record is read back";
    acknowledged = server.wal->Append(PutOf("acknowledged after restart"));
    ASSERT_TRUE(AwaitDurable(*server.wal, acknowledged));
    server.fs.Crash(CrashMode::PowerLoss());
  }
  Recovered recovered(clock_);
  absl::StatusOr<RecoveryStats> stats = RecoverInto(recovered);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GE(stats->next_lsn, acknowledged + 1);
  EXPECT_TRUE(recovered.store.Get("acknowledged after restart").ok());
}

// PosixFileSystem: records written by one server are recovered by the next from a real directory.
TEST_F(WalTest, PosixFileSystemSmoke) {
  std::string dir_template = ::testing::TempDir() + "wal_test.XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template.data()), nullptr);
  const std::string dir = dir_template;
  PosixFileSystem& fs = PosixFileSystem::Get();
  std::map<std::string, std::string> live;
  {
    FakeTimers timers;
    Wal wal(OptionsFor(fs, {.segment_bytes = 4096}, dir));
    TaskStore store(clock_, timers, {.retention = kRetention}, &wal);
    ASSERT_TRUE(wal.Recover(store).ok());
    ASSERT_TRUE(wal.StartWriting().ok());
    store.FinishRecovery();
    for (int i = 0; i < 100; ++i) {
      uint64_t lsn = 0;
      NewTask task;
      task.queue = "q";
      task.task_id = TaskName(i);
      task.payload = std::string(static_cast<size_t>(i) * 10, 'p');
      task.due_time = clock_.Now() + absl::Seconds(i);
      ASSERT_TRUE(store.Schedule(task, &lsn).ok());
      if (i % 3 == 0) {
        ASSERT_TRUE(store.Cancel(TaskName(i), &lsn).ok());
      }
      ASSERT_TRUE(AwaitDurable(wal, lsn));
    }
    live = Contents(store);
  }
  {
    FakeTimers timers;
    Wal wal(OptionsFor(fs, {.segment_bytes = 4096}, dir));
    TaskStore store(clock_, timers, {.retention = kRetention}, &wal);
    absl::StatusOr<RecoveryStats> stats = wal.Recover(store);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->records, 134u);
    EXPECT_GT(stats->segments, 1u);
    EXPECT_EQ(Contents(store), live);
  }
  absl::StatusOr<std::vector<std::string>> names = fs.ListDir(dir);
  ASSERT_TRUE(names.ok());
  for (const std::string& name : *names) EXPECT_TRUE(fs.Remove(dir + "/" + name).ok());
  EXPECT_EQ(::rmdir(dir.c_str()), 0);
}

// ---------------------------------------------------------------------------------------------
// 3. Faults: a failed write or sync ends the process, never acknowledging the batch.

// Runs in a death test's child: one record committed and acknowledged, then `inject` arms a fault,
// then a second record whose commit fails. on_fatal prints what was acknowledged and the error,
// recovers the disk after a crash in `crash_mode` as the next start would and prints what it
// found, then exits with 3. The failed batch's callback exits with 4.
void CommitUntilFatal(const std::function<void(FakeFileSystem&)>& inject,
                      const CrashMode& crash_mode, bool sync = true) {
  FakeFileSystem disk;
  FakeClock clock(kStart);
  std::atomic<int> acknowledged{0};
  Wal::Options options = OptionsFor(disk, {.sync = sync});
  options.on_fatal = [&](const absl::Status& status) {
    disk.SimulateCrash(crash_mode);
    disk.ClearFaults();
    FakeTimers timers;
    TaskStore store(clock, timers, {});
    Wal next(OptionsFor(disk));
    absl::StatusOr<RecoveryStats> stats = next.Recover(store);
    std::fprintf(
        stderr, "acknowledged %d; fatal: %s; recovered %s\n", acknowledged.load(),
        status.ToString().c_str(),
        stats.ok()
            ? absl::StrCat(stats->records, " records, ", stats->torn_tails, " torn tails").c_str()
            : stats.status().ToString().c_str());
    std::fflush(stderr);
    ::_exit(3);
  };
  Wal wal(options);
  FakeTimers timers;
  TaskStore store(clock, timers, {}, &wal);
  if (!wal.Recover(store).ok() || !wal.StartWriting().ok()) ::_exit(5);
  if (!AwaitDurable(wal, wal.Append(PutOf("acknowledged")))) ::_exit(6);
  ++acknowledged;
  inject(disk);
  wal.WhenDurable(wal.Append(PutOf("failed")), [] {
    std::fprintf(stderr, "the failed batch was acknowledged\n");
    ::_exit(4);
  });
  absl::Notification never;
  never.WaitForNotificationWithTimeout(kPatience);  // on_fatal ends the process before
}

class WalDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

// A failed sync: on_fatal gets the error, the batch is never acknowledged, and what was
// acknowledged before is recovered after a power loss.
TEST_F(WalDeathTest, FailedSyncIsFatalAndNeverAcknowledged) {
  EXPECT_EXIT(CommitUntilFatal(
                  [](FakeFileSystem& disk) {
                    disk.FailNth(Op::kSync, 1, absl::InternalError("injected sync failure"));
                  },
                  CrashMode::PowerLoss()),
              ::testing::ExitedWithCode(3),
              "acknowledged 1; fatal: INTERNAL: injected sync failure; recovered 1 records");
}

// A failed write, likewise.
TEST_F(WalDeathTest, FailedAppendIsFatalAndNeverAcknowledged) {
  EXPECT_EXIT(CommitUntilFatal(
                  [](FakeFileSystem& disk) {
                    disk.FailNth(Op::kAppend, 1, absl::InternalError("injected write failure"));
                  },
                  CrashMode::PowerLoss()),
              ::testing::ExitedWithCode(3),
              "acknowledged 1; fatal: INTERNAL: injected write failure; recovered 1 records");
}

// A failed flush with sync = false, likewise.
TEST_F(WalDeathTest, FailedFlushWithoutSyncIsFatalAndNeverAcknowledged) {
  EXPECT_EXIT(CommitUntilFatal(
                  [](FakeFileSystem& disk) {
                    disk.FailNth(Op::kFlush, 1, absl::InternalError("injected flush failure"));
                  },
                  CrashMode::ProcessCrash(), /*sync=*/false),
              ::testing::ExitedWithCode(3),
              "acknowledged 1; fatal: INTERNAL: injected flush failure; recovered 1 records");
}

// A full disk: the short write is fatal with RESOURCE_EXHAUSTED naming the file; after a crash of
// the process the half-written record is a torn tail, and what was acknowledged is there.
TEST_F(WalDeathTest, DiskFullIsFatalAndNeverAcknowledged) {
  EXPECT_EXIT(CommitUntilFatal([](FakeFileSystem& disk) { disk.SetDiskFullAfter(3); },
                               CrashMode::ProcessCrash()),
              ::testing::ExitedWithCode(3),
              "acknowledged 1; fatal: RESOURCE_EXHAUSTED: write /data/log-0+1\\.wal at offset "
              "[0-9]+: No space left on device.*; recovered 1 records, 1 torn tails");
}

// ---------------------------------------------------------------------------------------------
// 4. The model check.

using TaskMap = std::map<std::string, LogRecord>;  // task id -> the task as a TaskPut record

absl::string_view TaskIdOf(const LogRecord& record) {
  switch (record.change_case()) {
    case LogRecord::kPut:
      return record.put().task_id();
    case LogRecord::kUpdate:
      return record.update().task_id();
    case LogRecord::kForget:
      return record.forget().task_id();
    case LogRecord::CHANGE_NOT_SET:
      break;
  }
  return "";
}

// Applies `record` to `tasks` as TaskStore::Replay() does (records are absolute: a put is the whole
// task, an update its whole mutable part, and a SUCCEEDED or CANCELLED task keeps no payload or
// headers; a DEAD one keeps them for RetryTask).
void Apply(const LogRecord& record, TaskMap& tasks) {
  store::v1::TaskPut* put = nullptr;
  switch (record.change_case()) {
    case LogRecord::kPut:
      put = tasks[record.put().task_id()].mutable_put();
      *put = record.put();
      break;
    case LogRecord::kUpdate:
      if (auto it = tasks.find(record.update().task_id()); it != tasks.end()) {
        put = it->second.mutable_put();
        *put->mutable_state() = record.update();
      }
      break;
    case LogRecord::kForget:
      tasks.erase(record.forget().task_id());
      break;
    case LogRecord::CHANGE_NOT_SET:
      ADD_FAILURE() << "a record with no change";
      break;
  }
  const auto state = put != nullptr ? static_cast<TaskState>(put->state().state()) : TaskState{};
  if (put != nullptr && IsFinal(state) && state != TaskState::kDead) {
    put->clear_payload();
    put->clear_headers();
  }
}

// A task's state as a comparable string; "" when there is no such task.
std::string StateOf(const TaskMap& tasks, const std::string& id) {
  auto it = tasks.find(id);
  return it == tasks.end() ? std::string() : it->second.SerializeAsString();
}
std::string Show(const std::string& state) {
  if (state.empty()) return "(no task)";
  LogRecord record;
  record.ParseFromString(state);
  return record.ShortDebugString();
}

// What the test knows of one server process at its crash.
struct CrashPoint {
  uint64_t durable_lsn = 0;  // the Wal's, at the crash
  uint64_t last_lsn = 0;
  uint64_t max_acknowledged = 0;  // the largest LSN whose WhenDurable callback ran before it
  std::string how;                // for failure messages
};

// The property of issue 3, for a store just recovered after the crash of a process that started
// from `base` (its recovered tasks, as of `base_lsn`) and appended the records of `history`:
//  - recovery ends at an LSN R with durable_lsn <= R <= last_lsn at the crash (so every
//    acknowledged change is covered);
//  - every task is in a state that it had at some LSN in [durable_lsn, last_lsn]: its state when
//    the crash came, or a later one that a later (unacknowledged) record explains; a snapshot may
//    hold changes made after its LSN, so this is checked task by task;
//  - without a snapshot, the store is exactly the live store as of R: base + the records up to R.
// Reports what does not hold and returns false.
bool CheckRecovered(const TaskMap& base, uint64_t base_lsn, const HistoryLog& history,
                    const CrashPoint& crash, const RecoveryStats& stats, TaskStore& store) {
  const uint64_t recovered_lsn = stats.next_lsn - 1;
  const std::string where =
      absl::StrCat("; durable at the crash: LSN ", crash.durable_lsn,
                   ", acknowledged: ", crash.max_acknowledged, ", appended: ", crash.last_lsn,
                   ", recovered before: ", base_lsn, ", snapshot loaded: ", stats.snapshot_lsn);
  if (recovered_lsn < crash.durable_lsn || recovered_lsn < crash.max_acknowledged ||
      recovered_lsn > crash.last_lsn) {
    ADD_FAILURE() << "recovered up to LSN " << recovered_lsn << where;
    return false;
  }
  EXPECT_TRUE(stats.damaged_snapshots.empty()) << stats.damaged_snapshots.front();
  if (stats.snapshot_lsn == 0) {
    EXPECT_EQ(stats.records, recovered_lsn) << "every record since LSN 1 is replayed";
  }
  EXPECT_EQ(stats.skipped_bytes, 0u);

  const TaskMap recovered = Tasks(store);
  TaskMap live = base;
  for (uint64_t lsn = base_lsn + 1; lsn <= crash.durable_lsn; ++lsn) Apply(history.At(lsn), live);
  std::map<std::string, std::set<std::string>> allowed;
  for (const auto& [id, put] : live) allowed[id].insert(put.SerializeAsString());
  TaskMap exact;
  if (recovered_lsn == crash.durable_lsn) exact = live;
  for (uint64_t lsn = crash.durable_lsn + 1; lsn <= crash.last_lsn; ++lsn) {
    const LogRecord record = history.At(lsn);
    const std::string id(TaskIdOf(record));
    if (!allowed.contains(id)) allowed[id].insert(StateOf(live, id));
    Apply(record, live);
    allowed[id].insert(StateOf(live, id));
    if (lsn == recovered_lsn) exact = live;
  }
  bool ok = true;
  for (const auto& [id, states] : allowed) {
    const std::string got = StateOf(recovered, id);
    if (!states.contains(got)) {
      ADD_FAILURE() << "task " << id << " recovered as " << Show(got) << "; it was "
                    << Show(*states.begin()) << (states.size() > 1 ? " (or later states)" : "")
                    << where;
      ok = false;
    }
  }
  for (const auto& [id, put] : recovered) {
    if (!allowed.contains(id)) {
      ADD_FAILURE() << "task " << id
                    << " recovered, but it did not exist: " << put.ShortDebugString() << where;
      ok = false;
    }
  }
  if (ok && stats.snapshot_lsn == 0) {
    for (const auto& [id, put] : exact) {
      if (StateOf(recovered, id) != put.SerializeAsString()) {
        ADD_FAILURE() << "without a snapshot, task " << id << " must be as of LSN " << recovered_lsn
                      << ": " << put.ShortDebugString() << ", got " << Show(StateOf(recovered, id))
                      << where;
        ok = false;
      }
    }
    if (recovered.size() != exact.size()) {
      ADD_FAILURE() << recovered.size() << " tasks recovered, " << exact.size() << " as of LSN "
                    << recovered_lsn << where;
      ok = false;
    }
  }
  return ok;
}

struct ModelOptions {
  std::vector<CrashMode> modes;  // the crash modes to pick from (their seeds are replaced)
  int generations = 40;
};

// One seed of the model check: `options.generations` server processes on one disk, each
// recovering what the one before left (checked with CheckRecovered), then running random
// operations in group commits, with snapshots at random sizes, until it crashes at a random point
// in a random mode. Returns the number of crashes.
int RunModel(uint64_t seed, const ModelOptions& options) {
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  auto uniform = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  FakeClock clock(kStart);
  FakeFileSystem disk;
  HistoryLog history;
  Workload workload(seed * 7919 + 1, clock);
  TaskMap base;
  uint64_t base_lsn = 0;
  CrashPoint crash;
  std::string crashes_so_far;  // for failure messages
  int crashes = 0;

  for (int generation = 0; generation < options.generations; ++generation) {
    SCOPED_TRACE(absl::StrCat("generation ", generation, "; crashes before:", crashes_so_far));
    // What the process's WhenDurable callbacks saw; outlives `server`, whose Wal calls back until
    // it is stopped.
    struct Acknowledged {
      absl::Mutex mu;
      uint64_t max_lsn ABSL_GUARDED_BY(mu) = 0;
      uint64_t last_lsn ABSL_GUARDED_BY(mu) = 0;  // called back on the writer thread
    } acknowledged;
    const std::vector<uint64_t> segment_sizes = {600, 4096, 40000};
    const std::vector<uint64_t> snapshot_sizes = {0, 1500, 6000};
    const WalSettings settings = {
        .segment_bytes = segment_sizes[static_cast<size_t>(uniform(0, 2))],
        .snapshot_bytes = snapshot_sizes[static_cast<size_t>(uniform(0, 2))]};
    Server server(disk, clock, settings, &history);

    absl::StatusOr<RecoveryStats> stats = server.wal->Recover(*server.store);
    if (!stats.ok()) {
      ADD_FAILURE() << "recovery failed: " << stats.status() << "; durable at the crash: LSN "
                    << crash.durable_lsn << ", acknowledged: " << crash.max_acknowledged
                    << ", appended: " << crash.last_lsn;
      return crashes;
    }
    if (generation > 0 && !CheckRecovered(base, base_lsn, history, crash, *stats, *server.store)) {
      return crashes;
    }
    base = Tasks(*server.store);
    base_lsn = stats->next_lsn - 1;
    history.Start(server.wal.get(), base_lsn + 1);

    // A new process: perhaps a crash trigger in one of its threads (during StartWriting too), and
    // the commits held so that the test knows what is written and what is synced.
    CrashMode mode = options.modes[static_cast<size_t>(uniform(0, int(options.modes.size()) - 1))];
    mode.seed = rng();
    crash = CrashPoint{};
    crash.how = absl::StrCat(CrashModeName(mode), " (segments of ", settings.segment_bytes,
                             " bytes, snapshots every ", settings.snapshot_bytes, ")");
    server.fs.SetOnCrash([&crash, &server] {
      crash.durable_lsn = server.wal->durable_lsn();
      crash.last_lsn = server.wal->last_lsn();
    });
    // Callbacks of a group commit run on the writer thread in LSN order; one for an LSN already
    // durable (an idempotent Schedule answers with the original's LSN) runs at once on this one.
    const std::thread::id test_thread = std::this_thread::get_id();
    auto acknowledge = [&](uint64_t lsn) {
      return [&, lsn] {
        if (server.fs.crashed()) return;  // the process is dead: nobody hears of it
        const uint64_t durable = server.wal->durable_lsn();
        const bool at_once = std::this_thread::get_id() == test_thread;
        absl::MutexLock lock(&acknowledged.mu);
        EXPECT_GE(durable, lsn) << "acknowledged before it was durable";
        if (!at_once) {
          EXPECT_GE(lsn, acknowledged.last_lsn) << "callbacks out of LSN order";
          acknowledged.last_lsn = lsn;
        }
        acknowledged.max_lsn = std::max(acknowledged.max_lsn, lsn);
      };
    };
    if (uniform(0, 99) < 30) {
      const std::vector<std::pair<Op, int>> triggers = {
          {Op::kAppend, 40}, {Op::kSync, 6},   {Op::kSyncDir, 4}, {Op::kOpen, 4},
          {Op::kFlush, 6},   {Op::kRename, 2}, {Op::kRemove, 3}};
      const auto& [op, max_n] = triggers[static_cast<size_t>(uniform(0, 6))];
      const int n = uniform(1, max_n);
      server.fs.CrashAt(op, n, mode);
      absl::StrAppend(&crash.how, ", at call ", n, " of op ", static_cast<int>(op));
    }
    server.fs.HoldCommits(true);
    if (absl::Status s = server.wal->StartWriting(); !s.ok()) {
      ADD_FAILURE() << "StartWriting: " << s;
      return crashes;
    }
    server.store->FinishRecovery();
    server.FireDue(clock.Now());  // what fell due while the server was down

    // Group commits: a burst of operations while the writer holds the previous commit, then the
    // held commit is synced and the writer takes the whole burst and holds it in turn.
    const int bursts = uniform(1, 12);
    for (int burst = 0; burst < bursts && !server.fs.crashed(); ++burst) {
      const int steps = uniform(1, 6);
      for (int step = 0; step < steps && !server.fs.crashed(); ++step) {
        if (const uint64_t lsn = workload.Step(server); lsn != 0) {
          server.wal->WhenDurable(lsn, acknowledge(lsn));
        }
      }
      const uint64_t target = server.wal->last_lsn();
      server.wal->WhenDurable(target, [&server, target] { server.fs.NoteDurable(target); });
      if (server.fs.holding_one()) server.fs.Release();
      if (!server.fs.AwaitProgress(target)) {
        ADD_FAILURE() << "the writer thread made no progress";
        return crashes;
      }
    }

    if (!server.fs.crashed()) {
      const int when = uniform(0, 99);
      if (when < 20) {
        // Operations after the last hand-off: appended, never written.
        for (int step = uniform(1, 4); step > 0; --step) {
          if (const uint64_t lsn = workload.Step(server); lsn != 0) {
            server.wal->WhenDurable(lsn, acknowledge(lsn));
          }
        }
        absl::StrAppend(&crash.how, ", with records pending");
      } else if (when < 35) {
        server.fs.HoldCommits(false);
        if (!AwaitDurable(*server.wal, server.wal->last_lsn())) {
          ADD_FAILURE() << "the writer thread made no progress";
          return crashes;
        }
        absl::StrAppend(&crash.how, ", when idle");
      } else if (when < 45) {
        server.fs.HoldCommits(false);
        server.wal->Stop();
        absl::StrAppend(&crash.how, ", after Stop()");
      } else {
        absl::StrAppend(&crash.how, ", with a commit held before its sync");
      }
      server.fs.Crash(mode);
    } else {
      absl::StrAppend(&crash.how, ", which fired");
    }
    ++crashes;
    server.Stop();  // the dead process's Wal: its calls reach no disk
    {
      absl::MutexLock lock(&acknowledged.mu);
      crash.max_acknowledged = acknowledged.max_lsn;
    }
    EXPECT_LE(crash.max_acknowledged, crash.durable_lsn);
    absl::StrAppend(&crashes_so_far, "\n  ", generation, ": ", crash.how, "; durable LSN ",
                    crash.durable_lsn, ", appended ", crash.last_lsn);
  }
  return crashes;
}

// Issue 3's model check over crashes of the machine: unsynced data dropped or torn (with or
// without zeroes), unsynced directory changes undone.
TEST(WalModelTest, MachineCrashesLoseNothingAcknowledged) {
  int crashes = 0;
  for (uint64_t seed = 1; seed <= 10 && !HasFailure(); ++seed) {
    crashes += RunModel(seed, {.modes = {CrashMode::PowerLoss(), CrashMode::TornWrite(0),
                                         CrashMode::TornWriteWithZeroes(0)}});
  }
  if (!HasFailure()) {
    EXPECT_EQ(crashes, 400);
  }
}

// The same over crashes of the process alone (kill -9: the operating system keeps what was
// written).
TEST(WalModelTest, ProcessCrashesLoseNothingAcknowledged) {
  int crashes = 0;
  for (uint64_t seed = 101; seed <= 105 && !HasFailure(); ++seed) {
    crashes += RunModel(seed, {.modes = {CrashMode::ProcessCrash()}});
  }
  if (!HasFailure()) {
    EXPECT_EQ(crashes, 200);
  }
}

// Every mode FakeFileSystem simulates, mixed: among others, a process crash followed,
// generations later, by a machine crash.
TEST(WalModelTest, MixedCrashesLoseNothingAcknowledged) {
  int crashes = 0;
  for (uint64_t seed = 201; seed <= 210 && !HasFailure(); ++seed) {
    crashes +=
        RunModel(seed, {.modes = {CrashMode::ProcessCrash(), CrashMode::PowerLoss(),
                                  CrashMode::TornWrite(0), CrashMode::TornWriteWithZeroes(0)}});
  }
  if (!HasFailure()) {
    EXPECT_EQ(crashes, 400);
  }
}

}  // namespace
}  // namespace hourglass
