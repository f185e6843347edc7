// FileSystem: the one way the store reaches files, so that crash tests are deterministic (LevelDB's
// Env, reduced to what a write-ahead log and its snapshots need).
//
//   FileSystem& fs = PosixFileSystem::Get();
//   absl::StatusOr<std::unique_ptr<WritableFile>> file = fs.NewAppendableFile(dir + "/wal.log");
//   if (!file.ok()) return file.status();
//   absl::Status s = (*file)->Append(bytes);           // buffered in the process
//   if (s.ok()) s = (*file)->Sync();                     // written and fdatasync()ed: durable
//   ...
//   s = fs.Rename(dir + "/snapshot.tmp", dir + "/snapshot");   // atomic replace
//   if (s.ok()) s = fs.SyncDir(dir);                            // the rename is durable too
//
// Tests use FakeFileSystem (below): files in memory, a model of what survives a crash, and
// injected faults.
//
// Durability, as both implementations promise it:
//   - Append() data sits in a buffer in the process; Flush() hands it to the operating system
//     (it then survives a crash of the process, not of the machine; readers see it); Sync()
//     flushes and fdatasync()s (it then survives a machine crash).
//   - Creating, renaming or removing a file changes its directory; the change survives a machine
//     crash only once SyncDir() of that directory returns. A new file's synced data is lost with
//     the file if its directory was not synced after the creation.
//
// Errors are absl::Status values naming the operation, the path and, for reads and writes, the
// file offset: NOT_FOUND for a missing file, RESOURCE_EXHAUSTED for a full disk (ENOSPC, EDQUOT),
// PERMISSION_DENIED, ALREADY_EXISTS, FAILED_PRECONDITION (e.g. not a directory), INTERNAL for the
// rest (EIO, ...).
#ifndef HOURGLASS_STORE_FILE_H_
#define HOURGLASS_STORE_FILE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace hourglass {

// A file written at its end. Not thread-safe: one writer at a time.
//
// After any call fails, the file's state is unknown (a part of the data may have reached the
// file): every later call returns the same error. A caller that goes on writing must truncate the
// file to a length it knows (FileSystem::Truncate) and open it again.
class WritableFile {
 public:
  virtual ~WritableFile() = default;  // closes the file (flushing it) if Close() was not called

  virtual absl::Status Append(absl::string_view data) = 0;
  // Hands the buffered data to the operating system.
  virtual absl::Status Flush() = 0;
  // Flush() and fdatasync(): on OK every byte appended so far is durable.
  virtual absl::Status Sync() = 0;
  // Flushes (does not sync) and closes. Every later call fails.
  virtual absl::Status Close() = 0;
};

// A file read from its beginning. Not thread-safe.
class SequentialFile {
 public:
  virtual ~SequentialFile() = default;

  // Replaces *out with the next up to `n` bytes and returns how many were read: fewer than `n`
  // only at the end of the file, 0 once there.
  virtual absl::StatusOr<size_t> Read(size_t n, std::string* out) = 0;
  // Skips `n` bytes (past the end of the file: later reads return 0).
  virtual absl::Status Skip(uint64_t n) = 0;
};

// Thread-safe: every method may be called from any thread.
class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // Opens `path` for appending, creating it (empty) if it does not exist.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) = 0;
  // Creates `path`, or truncates it to 0 bytes if it exists (the truncation, like the creation,
  // is durable only after Sync() and SyncDir()). For temporary files such as snapshots.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) = 0;
  virtual absl::StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(
      const std::string& path) = 0;
  virtual absl::StatusOr<std::string> ReadFileToString(const std::string& path) = 0;

  // The names (not paths) of the entries of `dir`, sorted, without "." and "..".
  virtual absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  // Atomically replaces `to` (if it exists) by `from`.
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;
  virtual absl::Status Remove(const std::string& path) = 0;
  // Creates the directory `path` (its parent must exist); OK if it exists already.
  virtual absl::Status CreateDir(const std::string& path) = 0;
  // fsync()s the directory: the creations, renames and removals in it so far are durable.
  virtual absl::Status SyncDir(const std::string& dir) = 0;
  // Shortens `path` to `size` bytes (no longer than it is) and syncs it: on OK the new length is
  // durable. For cutting a torn tail off a log before appending to it again.
  virtual absl::Status Truncate(const std::string& path, uint64_t size) = 0;

  // The size of the file as readers see it (flushed data).
  virtual absl::StatusOr<uint64_t> FileSize(const std::string& path) = 0;
  virtual bool Exists(const std::string& path) = 0;
};

// The real file system (POSIX calls; EINTR is retried). WritableFiles buffer 64 KiB.
class PosixFileSystem final : public FileSystem {
 public:
  // The process-wide instance.
  static PosixFileSystem& Get();

  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(
      const std::string& path) override;
  absl::StatusOr<std::string> ReadFileToString(const std::string& path) override;
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status Remove(const std::string& path) override;
  absl::Status CreateDir(const std::string& path) override;
  absl::Status SyncDir(const std::string& dir) override;
  absl::Status Truncate(const std::string& path, uint64_t size) override;
  absl::StatusOr<uint64_t> FileSize(const std::string& path) override;
  bool Exists(const std::string& path) override;
};

// An in-memory FileSystem that models durability, for crash tests.
//
// For each file it keeps what readers see (flushed data) and what is durable (the data as of its
// last Sync()); a WritableFile's unflushed buffer lives in the WritableFile. For each directory it
// keeps its entries and its durable entries (as of its last SyncDir()). SimulateCrash() throws
// away what was not durable, as a crash of the process or of the machine would, and invalidates
// every open file: their later calls fail with FAILED_PRECONDITION.
//
//   FakeFileSystem fs;
//   ASSERT_TRUE(fs.CreateDir("/data").ok());
//   auto file = *fs.NewAppendableFile("/data/wal");
//   ASSERT_TRUE(file->Append("abc").ok() && file->Sync().ok());
//   ASSERT_TRUE(file->Append("def").ok() && file->Flush().ok());
//   fs.SimulateCrash(FakeFileSystem::CrashMode::PowerLoss());
//   fs.FileSize("/data/wal");   // NOT_FOUND: "/data" was never synced after the creation
//
// Paths are strings split at their last '/': "/data/wal" is the entry "wal" of the directory
// "/data" (a path without '/' is in "."). Directories exist once CreateDir() made them (their
// parents need not exist) and survive every crash; they are not listed by ListDir().
//
// Thread-safe (one mutex); each WritableFile and SequentialFile is for one thread at a time.
class FakeFileSystem final : public FileSystem {
 public:
  // What a crash keeps of data that was not synced, and of directory changes not synced.
  struct CrashMode {
    enum class UnsyncedData {
      kKeep,              // flushed data survives (kill -9 of the process; the OS lives on)
      kDrop,              // every byte written since the file's last Sync() is lost
      kTornPrefix,        // each file keeps a random prefix of those bytes (a torn write)
      kTornPrefixZeroes,  // a random prefix, then a random run of zero bytes in place of the
                          // next ones (the file's size was updated before its data)
    };
    UnsyncedData data = UnsyncedData::kDrop;
    // True: directory changes not followed by SyncDir() of their directory are undone (a file
    // created and not synced into its directory disappears, a rename or removal is reverted).
    bool undo_unsynced_dir_ops = true;
    uint64_t seed = 0;  // for the torn modes

    static CrashMode ProcessCrash() { return {UnsyncedData::kKeep, false, 0}; }
    static CrashMode PowerLoss() { return {UnsyncedData::kDrop, true, 0}; }
    static CrashMode TornWrite(uint64_t seed) { return {UnsyncedData::kTornPrefix, true, seed}; }
    static CrashMode TornWriteWithZeroes(uint64_t seed) {
      return {UnsyncedData::kTornPrefixZeroes, true, seed};
    }
  };

  // The operations faults can be injected into (kOpen: the New*File calls).
  enum class Op { kAppend, kFlush, kSync, kClose, kOpen, kRename, kRemove, kSyncDir, kTruncate };

  struct Stats {
    int64_t appends = 0;
    int64_t flushes = 0;
    int64_t syncs = 0;  // WritableFile::Sync() calls that succeeded
    int64_t sync_dirs = 0;
    int64_t renames = 0;
    uint64_t bytes_appended = 0;
  };

  FakeFileSystem();
  ~FakeFileSystem() override;

  // Throws away what `mode` says a crash loses; every file opened before fails from now on.
  void SimulateCrash(const CrashMode& mode) ABSL_LOCKS_EXCLUDED(mu_);

  // The `n`-th call of `op` from now on (1: the next one) fails with `error` and changes nothing
  // (a Sync() that fails has flushed, not synced). Several faults may be pending at once.
  void FailNth(Op op, int n, absl::Status error) ABSL_LOCKS_EXCLUDED(mu_);
  // The next `bytes` bytes appended (to any file) succeed; the Append() that would go beyond
  // writes what fits to the file (flushing the file's buffer first, a short write) and fails with
  // RESOURCE_EXHAUSTED, as does every Append() after it, until ClearFaults().
  void SetDiskFullAfter(uint64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);
  void ClearFaults() ABSL_LOCKS_EXCLUDED(mu_);

  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);

  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(const std::string& path) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(
      const std::string& path) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::string> ReadFileToString(const std::string& path) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Rename(const std::string& from, const std::string& to) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Remove(const std::string& path) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status CreateDir(const std::string& path) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status SyncDir(const std::string& dir) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Truncate(const std::string& path, uint64_t size) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<uint64_t> FileSize(const std::string& path) override ABSL_LOCKS_EXCLUDED(mu_);
  bool Exists(const std::string& path) override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class FakeWritableFile;
  class FakeSequentialFile;
  struct Inode;
  struct Dir {
    std::map<std::string, std::shared_ptr<Inode>> entries;
    std::map<std::string, std::shared_ptr<Inode>> durable_entries;  // as of the last SyncDir()
  };
  struct Fault {
    Op op;
    int countdown;  // calls of `op` still to pass before this one fails
    absl::Status error;
  };

  absl::StatusOr<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path, bool truncate)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The injected error for this call of `op`, or OK.
  absl::Status CheckFaultLocked(Op op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Dir* FindDirLocked(absl::string_view dir) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The file at `path` (nullptr if none); sets *dir and *name when found or not.
  std::shared_ptr<Inode> FindFileLocked(const std::string& path, Dir** dir, std::string* name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Dir> dirs_ ABSL_GUARDED_BY(mu_);
  // Incremented by SimulateCrash(); files opened in an earlier epoch are dead.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Fault> faults_ ABSL_GUARDED_BY(mu_);
  bool disk_full_armed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t disk_free_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hourglass

#endif  // HOURGLASS_STORE_FILE_H_
