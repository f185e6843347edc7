#include "store/file.h"

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hourglass {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using CrashMode = FakeFileSystem::CrashMode;
using Op = FakeFileSystem::Op;

std::unique_ptr<WritableFile> OpenAppendable(FileSystem& fs, const std::string& path) {
  absl::StatusOr<std::unique_ptr<WritableFile>> file = fs.NewAppendableFile(path);
  EXPECT_TRUE(file.ok()) << file.status();
  return file.ok() ? std::move(*file) : nullptr;
}

std::string Contents(FileSystem& fs, const std::string& path) {
  absl::StatusOr<std::string> contents = fs.ReadFileToString(path);
  return contents.ok() ? *contents : absl::StrCat("<", contents.status().ToString(), ">");
}

// ---------------------------------------------------------------------------------------------
// FakeFileSystem

class FakeFileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fs_.CreateDir("/data").ok()); }

  // A file "/data/<name>" whose creation is durable (directory synced), holding `synced` durably
  // and `flushed` after it, not synced.
  std::unique_ptr<WritableFile> MakeFile(const std::string& name, const std::string& synced,
                                         const std::string& flushed) {
    std::unique_ptr<WritableFile> file = OpenAppendable(fs_, "/data/" + name);
    EXPECT_TRUE(fs_.SyncDir("/data").ok());
    EXPECT_TRUE(file->Append(synced).ok());
    EXPECT_TRUE(file->Sync().ok());
    EXPECT_TRUE(file->Append(flushed).ok());
    EXPECT_TRUE(file->Flush().ok());
    return file;
  }

  FakeFileSystem fs_;
};

// Appended data is invisible to readers until Flush(), like the POSIX file's buffer.
TEST_F(FakeFileSystemTest, AppendIsVisibleAfterFlush) {
  std::unique_ptr<WritableFile> file = OpenAppendable(fs_, "/data/wal");
  ASSERT_TRUE(file->Append("abc").ok());
  EXPECT_EQ(Contents(fs_, "/data/wal"), "");
  EXPECT_EQ(*fs_.FileSize("/data/wal"), 0u);
  ASSERT_TRUE(file->Flush().ok());
  EXPECT_EQ(Contents(fs_, "/data/wal"), "abc");
  EXPECT_EQ(*fs_.FileSize("/data/wal"), 3u);
  // Reopening appends.
  ASSERT_TRUE(file->Close().ok());
  file = OpenAppendable(fs_, "/data/wal");
  ASSERT_TRUE(file->Append("def").ok());
  ASSERT_TRUE(file->Close().ok());
  EXPECT_EQ(Contents(fs_, "/data/wal"), "abcdef");
}

// A power loss keeps exactly the synced bytes of a file whose creation was synced.
TEST_F(FakeFileSystemTest, PowerLossDropsUnsyncedBytes) {
  std::unique_ptr<WritableFile> file = MakeFile("wal", "durable", "+flushed");
  ASSERT_TRUE(file->Append("+buffered").ok());
  fs_.SimulateCrash(CrashMode::PowerLoss());
  EXPECT_EQ(Contents(fs_, "/data/wal"), "durable");
}

// A process crash keeps what was flushed to the OS, not the process's buffer.
TEST_F(FakeFileSystemTest, ProcessCrashKeepsFlushedBytes) {
  std::unique_ptr<WritableFile> file = MakeFile("wal", "durable", "+flushed");
  ASSERT_TRUE(file->Append("+buffered").ok());
  std::unique_ptr<WritableFile> unsynced_dir_file = OpenAppendable(fs_, "/data/new");
  ASSERT_TRUE(unsynced_dir_file->Append("x").ok() && unsynced_dir_file->Flush().ok());
  fs_.SimulateCrash(CrashMode::ProcessCrash());
  EXPECT_EQ(Contents(fs_, "/data/wal"), "durable+flushed");
  EXPECT_EQ(Contents(fs_, "/data/new"), "x");
  // What was not synced is still not durable: a later power loss drops it.
  fs_.SimulateCrash(CrashMode::PowerLoss());
  EXPECT_EQ(Contents(fs_, "/data/wal"), "durable");
}

// A torn write keeps the durable bytes and a prefix of the unsynced ones, the same prefix for
// the same seed, and over many seeds every length from none to all.
TEST_F(FakeFileSystemTest, TornWriteKeepsARandomPrefix) {
  const std::string unsynced = "0123456789";
  std::set<size_t> lengths;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    std::string kept[2];
    for (int run = 0; run < 2; ++run) {
      FakeFileSystem fs;
      ASSERT_TRUE(fs.CreateDir("/data").ok());
      std::unique_ptr<WritableFile> file = OpenAppendable(fs, "/data/wal");
      ASSERT_TRUE(fs.SyncDir("/data").ok());
      ASSERT_TRUE(file->Append("durable").ok() && file->Sync().ok());
      ASSERT_TRUE(file->Append(unsynced).ok() && file->Flush().ok());
      fs.SimulateCrash(CrashMode::TornWrite(seed));
      kept[run] = Contents(fs, "/data/wal");
    }
    EXPECT_EQ(kept[0], kept[1]) << "seed " << seed;
    ASSERT_GE(kept[0].size(), 7u);
    EXPECT_EQ(kept[0], "durable" + unsynced.substr(0, kept[0].size() - 7)) << "seed " << seed;
    lengths.insert(kept[0].size() - 7);
  }
  EXPECT_EQ(lengths.size(), unsynced.size() + 1);
}

// The zero-filling torn write keeps a prefix, then zero bytes, never longer than what was
// written.
TEST_F(FakeFileSystemTest, TornWriteWithZeroesEndsInZeroes) {
  bool saw_zeroes = false;
  for (uint64_t seed = 0; seed < 100; ++seed) {
    FakeFileSystem fs;
    ASSERT_TRUE(fs.CreateDir("/data").ok());
    std::unique_ptr<WritableFile> file = OpenAppendable(fs, "/data/wal");
    ASSERT_TRUE(fs.SyncDir("/data").ok());
    ASSERT_TRUE(file->Append("durable").ok() && file->Sync().ok());
    ASSERT_TRUE(file->Append("ABCDEFGHIJ").ok() && file->Flush().ok());
    fs.SimulateCrash(CrashMode::TornWriteWithZeroes(seed));
    const std::string kept = Contents(fs, "/data/wal");
    ASSERT_LE(kept.size(), 17u);
    ASSERT_EQ(kept.substr(0, 7), "durable");
    const size_t data_end = kept.find_first_of(std::string(1, '\0'));
    const std::string data =
        kept.substr(7, data_end == std::string::npos ? std::string::npos : data_end - 7);
    EXPECT_EQ(data, std::string("ABCDEFGHIJ").substr(0, data.size()));
    if (data_end != std::string::npos) {
      saw_zeroes = true;
      EXPECT_EQ(kept.find_first_not_of(std::string(1, '\0'), data_end), std::string::npos);
    }
  }
  EXPECT_TRUE(saw_zeroes);
}

// Synced data of a file whose directory entry was never synced is lost with the file.
TEST_F(FakeFileSystemTest, CreationWithoutSyncDirIsUndone) {
  std::unique_ptr<WritableFile> file = OpenAppendable(fs_, "/data/wal");
  ASSERT_TRUE(file->Append("synced").ok() && file->Sync().ok());
  fs_.SimulateCrash(CrashMode::PowerLoss());
  EXPECT_FALSE(fs_.Exists("/data/wal"));
  EXPECT_EQ(fs_.FileSize("/data/wal").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(*fs_.ListDir("/data"), ElementsAre());
}

// A rename not followed by SyncDir is undone by a power loss; after SyncDir it survives.
TEST_F(FakeFileSystemTest, RenameWithoutSyncDirIsUndone) {
  MakeFile("snapshot", "old", "");
  std::unique_ptr<WritableFile> tmp = OpenAppendable(fs_, "/data/snapshot.tmp");
  ASSERT_TRUE(tmp->Append("new").ok() && tmp->Sync().ok() && tmp->Close().ok());
  ASSERT_TRUE(fs_.Rename("/data/snapshot.tmp", "/data/snapshot").ok());
  EXPECT_EQ(Contents(fs_, "/data/snapshot"), "new");
  EXPECT_THAT(*fs_.ListDir("/data"), ElementsAre("snapshot"));
  fs_.SimulateCrash(CrashMode::PowerLoss());
  EXPECT_EQ(Contents(fs_, "/data/snapshot"), "old");
  EXPECT_FALSE(fs_.Exists("/data/snapshot.tmp"));  // its creation was not synced either

  tmp = OpenAppendable(fs_, "/data/snapshot.tmp");
  ASSERT_TRUE(tmp->Append("new").ok() && tmp->Sync().ok() && tmp->Close().ok());
  ASSERT_TRUE(fs_.Rename("/data/snapshot.tmp", "/data/snapshot").ok());
  ASSERT_TRUE(fs_.SyncDir("/data").ok());
  fs_.SimulateCrash(CrashMode::PowerLoss());
  EXPECT_EQ(Contents(fs_, "/data/snapshot"), "new");
  EXPECT_THAT(*fs_.ListDir("/data"), ElementsAre("snapshot"));
}

// A removal not followed by SyncDir is undone by a power loss; the file comes back with its
// durable contents.
TEST_F(FakeFileSystemTest, RemoveWithoutSyncDirIsUndone) {
  MakeFile("segment-1", "records", "+unsynced");
  ASSERT_TRUE(fs_.Remove("/data/segment-1").ok());
  EXPECT_FALSE(fs_.Exists("/data/segment-1"));
  fs_.SimulateCrash(CrashMode::PowerLoss());
  EXPECT_EQ(Contents(fs_, "/data/segment-1"), "records");
  ASSERT_TRUE(fs_.Remove("/data/segment-1").ok());
  ASSERT_TRUE(fs_.SyncDir("/data").ok());
  fs_.SimulateCrash(CrashMode::PowerLoss());
  EXPECT_FALSE(fs_.Exists("/data/segment-1"));
}

// Directory changes can be kept while unsynced data is dropped (undo_unsynced_dir_ops = false).
TEST_F(FakeFileSystemTest, CrashCanKeepDirectoryChanges) {
  std::unique_ptr<WritableFile> file = OpenAppendable(fs_, "/data/wal");
  ASSERT_TRUE(file->Append("synced").ok() && file->Sync().ok());
  ASSERT_TRUE(file->Append("+not").ok() && file->Flush().ok());
  fs_.SimulateCrash({CrashMode::UnsyncedData::kDrop, /*undo_unsynced_dir_ops=*/false, 0});
  EXPECT_EQ(Contents(fs_, "/data/wal"), "synced");
}

// Files opened before a crash belong to the dead process: every call on them fails.
TEST_F(FakeFileSystemTest, FilesOpenedBeforeACrashFail) {
  std::unique_ptr<WritableFile> file = MakeFile("wal", "a", "b");
  absl::StatusOr<std::unique_ptr<SequentialFile>> reader = fs_.NewSequentialFile("/data/wal");
  ASSERT_TRUE(reader.ok());
  fs_.SimulateCrash(CrashMode::ProcessCrash());
  EXPECT_EQ(file->Append("c").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(file->Sync().code(), absl::StatusCode::kFailedPrecondition);
  std::string out;
  EXPECT_EQ((*reader)->Read(10, &out).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Contents(fs_, "/data/wal"), "ab");
}

// The n-th Append fails with the injected error; the file then refuses every write, other files
// are unaffected.
TEST_F(FakeFileSystemTest, NthAppendFails) {
  std::unique_ptr<WritableFile> file = OpenAppendable(fs_, "/data/wal");
  std::unique_ptr<WritableFile> other = OpenAppendable(fs_, "/data/other");
  fs_.FailNth(Op::kAppend, 3, absl::InternalError("injected EIO"));
  EXPECT_TRUE(file->Append("1").ok());
  EXPECT_TRUE(file->Append("2").ok());
  EXPECT_EQ(file->Append("3"), absl::InternalError("injected EIO"));
  EXPECT_EQ(file->Append("4"), absl::InternalError("injected EIO"));
  EXPECT_EQ(file->Sync(), absl::InternalError("injected EIO"));
  EXPECT_TRUE(other->Append("x").ok());
  EXPECT_TRUE(other->Flush().ok());
  EXPECT_EQ(Contents(fs_, "/data/wal"), "");
  EXPECT_EQ(Contents(fs_, "/data/other"), "x");
}

// A failed Sync() has flushed but not made anything durable.
TEST_F(FakeFileSystemTest, FailedSyncIsNotDurable) {
  std::unique_ptr<WritableFile> file = MakeFile("wal", "durable", "");
  fs_.FailNth(Op::kSync, 1, absl::InternalError("injected fdatasync failure"));
  ASSERT_TRUE(file->Append("+more").ok());
  EXPECT_EQ(file->Sync(), absl::InternalError("injected fdatasync failure"));
  EXPECT_EQ(Contents(fs_, "/data/wal"), "durable+more");
  fs_.SimulateCrash(CrashMode::PowerLoss());
  EXPECT_EQ(Contents(fs_, "/data/wal"), "durable");
  EXPECT_EQ(fs_.stats().syncs, 1);
}

// An injected Rename failure changes nothing; the next Rename works.
TEST_F(FakeFileSystemTest, NthRenameFails) {
  MakeFile("a", "A", "");
  fs_.FailNth(Op::kRename, 1, absl::InternalError("injected"));
  EXPECT_EQ(fs_.Rename("/data/a", "/data/b"), absl::InternalError("injected"));
  EXPECT_THAT(*fs_.ListDir("/data"), ElementsAre("a"));
  EXPECT_TRUE(fs_.Rename("/data/a", "/data/b").ok());
  EXPECT_THAT(*fs_.ListDir("/data"), ElementsAre("b"));
}

// Faults for SyncDir, Flush, Open, Remove and Truncate are returned too; ClearFaults() drops
// pending ones.
TEST_F(FakeFileSystemTest, OtherInjectedFaults) {
  std::unique_ptr<WritableFile> file = MakeFile("wal", "abc", "");
  fs_.FailNth(Op::kSyncDir, 1, absl::InternalError("syncdir"));
  fs_.FailNth(Op::kOpen, 1, absl::InternalError("open"));
  fs_.FailNth(Op::kRemove, 1, absl::InternalError("remove"));
  fs_.FailNth(Op::kTruncate, 1, absl::InternalError("truncate"));
  EXPECT_EQ(fs_.SyncDir("/data"), absl::InternalError("syncdir"));
  EXPECT_EQ(fs_.NewSequentialFile("/data/wal").status(), absl::InternalError("open"));
  EXPECT_EQ(fs_.Remove("/data/wal"), absl::InternalError("remove"));
  EXPECT_EQ(fs_.Truncate("/data/wal", 1), absl::InternalError("truncate"));
  fs_.FailNth(Op::kFlush, 2, absl::InternalError("flush"));
  fs_.FailNth(Op::kAppend, 5, absl::InternalError("append"));
  EXPECT_TRUE(file->Flush().ok());
  fs_.ClearFaults();
  EXPECT_TRUE(file->Flush().ok());
  EXPECT_EQ(Contents(fs_, "/data/wal"), "abc");
}

// A full disk: the Append that goes beyond the free space writes what fits (a short write) and
// fails with RESOURCE_EXHAUSTED naming the file; so does every later Append.
TEST_F(FakeFileSystemTest, DiskFull) {
  std::unique_ptr<WritableFile> file = OpenAppendable(fs_, "/data/wal");
  ASSERT_TRUE(file->Append("12345").ok());
  fs_.SetDiskFullAfter(8);
  ASSERT_TRUE(file->Append("678").ok());
  const absl::Status full = file->Append("ABCDEFGH");
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.message(), HasSubstr("/data/wal"));
  EXPECT_THAT(full.message(), HasSubstr("offset 13"));
  EXPECT_EQ(Contents(fs_, "/data/wal"), "12345678ABCDE");
  std::unique_ptr<WritableFile> other = OpenAppendable(fs_, "/data/other");
  EXPECT_EQ(other->Append("x").code(), absl::StatusCode::kResourceExhausted);
  fs_.ClearFaults();
  other = OpenAppendable(fs_, "/data/other");
  EXPECT_TRUE(other->Append("x").ok());
}

// Truncate shortens durably; growing is refused.
TEST_F(FakeFileSystemTest, Truncate) {
  MakeFile("wal", "0123456789", "abc");
  ASSERT_TRUE(fs_.Truncate("/data/wal", 4).ok());
  EXPECT_EQ(Contents(fs_, "/data/wal"), "0123");
  fs_.SimulateCrash(CrashMode::PowerLoss());
  EXPECT_EQ(Contents(fs_, "/data/wal"), "0123");
  EXPECT_EQ(fs_.Truncate("/data/wal", 5).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fs_.Truncate("/data/missing", 0).code(), absl::StatusCode::kNotFound);
}

// NewWritableFile truncates; until synced, a crash brings the old contents back.
TEST_F(FakeFileSystemTest, NewWritableFileTruncates) {
  MakeFile("snapshot.tmp", "old contents", "");
  absl::StatusOr<std::unique_ptr<WritableFile>> file = fs_.NewWritableFile("/data/snapshot.tmp");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(Contents(fs_, "/data/snapshot.tmp"), "");
  ASSERT_TRUE((*file)->Append("new").ok() && (*file)->Flush().ok());
  EXPECT_EQ(Contents(fs_, "/data/snapshot.tmp"), "new");
  fs_.SimulateCrash(CrashMode::PowerLoss());
  EXPECT_EQ(Contents(fs_, "/data/snapshot.tmp"), "old contents");
}

// Reads in pieces, Skip, and errors that name the missing path.
TEST_F(FakeFileSystemTest, SequentialReadsAndErrors) {
  MakeFile("wal", "0123456789", "");
  absl::StatusOr<std::unique_ptr<SequentialFile>> reader = fs_.NewSequentialFile("/data/wal");
  ASSERT_TRUE(reader.ok());
  std::string out;
  EXPECT_EQ(*(*reader)->Read(4, &out), 4u);
  EXPECT_EQ(out, "0123");
  ASSERT_TRUE((*reader)->Skip(3).ok());
  EXPECT_EQ(*(*reader)->Read(10, &out), 3u);
  EXPECT_EQ(out, "789");
  EXPECT_EQ(*(*reader)->Read(10, &out), 0u);

  for (const absl::Status& s :
       {fs_.NewSequentialFile("/data/missing").status(),
        fs_.ReadFileToString("/data/missing").status(), fs_.FileSize("/data/missing").status(),
        fs_.Remove("/data/missing"), fs_.Rename("/data/missing", "/data/x")}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(s.message(), HasSubstr("/data/missing"));
  }
  EXPECT_EQ(fs_.NewAppendableFile("/nodir/wal").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fs_.ListDir("/nodir").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fs_.SyncDir("/nodir").code(), absl::StatusCode::kNotFound);
}

// ListDir lists a directory's files sorted, across directories separately.
TEST_F(FakeFileSystemTest, ListDir) {
  ASSERT_TRUE(fs_.CreateDir("/data/sub").ok());
  for (const char* name : {"wal-3", "wal-1", "wal-2"})
    OpenAppendable(fs_, absl::StrCat("/data/", name));
  OpenAppendable(fs_, "/data/sub/other");
  EXPECT_THAT(*fs_.ListDir("/data"), ElementsAre("wal-1", "wal-2", "wal-3"));
  EXPECT_THAT(*fs_.ListDir("/data/"), ElementsAre("wal-1", "wal-2", "wal-3"));
  EXPECT_THAT(*fs_.ListDir("/data/sub"), ElementsAre("other"));
  EXPECT_TRUE(fs_.Exists("/data/sub"));
}

// Stats count the calls the group commit is measured by.
TEST_F(FakeFileSystemTest, Stats) {
  std::unique_ptr<WritableFile> file = OpenAppendable(fs_, "/data/wal");
  ASSERT_TRUE(file->Append("abc").ok() && file->Append("de").ok() && file->Sync().ok());
  ASSERT_TRUE(fs_.SyncDir("/data").ok());
  const FakeFileSystem::Stats stats = fs_.stats();
  EXPECT_EQ(stats.appends, 2);
  EXPECT_EQ(stats.bytes_appended, 5u);
  EXPECT_EQ(stats.syncs, 1);
  EXPECT_EQ(stats.sync_dirs, 1);
}

// Threads appending to their own files concurrently lose nothing.
TEST_F(FakeFileSystemTest, ConcurrentAppends) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      std::unique_ptr<WritableFile> file = OpenAppendable(fs_, absl::StrCat("/data/f", t));
      for (int i = 0; i < 1000; ++i) ASSERT_TRUE(file->Append("x").ok());
      ASSERT_TRUE(file->Sync().ok());
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(*fs_.FileSize(absl::StrCat("/data/f", t)), 1000u);
}

// ---------------------------------------------------------------------------------------------
// PosixFileSystem, in a fresh temporary directory.

class PosixFileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "hourglass_file_XXXXXX");
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(absl::string_view name) const { return absl::StrCat(dir_, "/", name); }

  PosixFileSystem& fs_ = PosixFileSystem::Get();
  std::string dir_;
};

// Append, Flush, Sync, reopen to append, and read back.
TEST_F(PosixFileSystemTest, AppendSyncAndReadBack) {
  std::unique_ptr<WritableFile> file = OpenAppendable(fs_, Path("wal"));
  ASSERT_TRUE(file->Append("hello").ok());
  EXPECT_EQ(*fs_.FileSize(Path("wal")), 0u);  // still in the process's buffer
  ASSERT_TRUE(file->Flush().ok());
  EXPECT_EQ(*fs_.FileSize(Path("wal")), 5u);
  ASSERT_TRUE(file->Append(" world").ok());
  ASSERT_TRUE(file->Sync().ok());
  ASSERT_TRUE(file->Close().ok());
  EXPECT_FALSE(file->Append("x").ok());  // closed
  file = OpenAppendable(fs_, Path("wal"));
  ASSERT_TRUE(file->Append("!").ok());
  file.reset();  // the destructor closes, flushing
  EXPECT_EQ(Contents(fs_, Path("wal")), "hello world!");
  ASSERT_TRUE(fs_.SyncDir(dir_).ok());
  EXPECT_TRUE(fs_.Exists(Path("wal")));
}

// Appends larger than the 64 KiB buffer, mixed with small ones, arrive in order.
TEST_F(PosixFileSystemTest, LargeAppends) {
  std::unique_ptr<WritableFile> file = OpenAppendable(fs_, Path("big"));
  std::string expected;
  for (size_t size : {10u, 70000u, 3u, 65536u, 65535u, 200000u, 1u}) {
    const std::string chunk(size, static_cast<char>('a' + expected.size() % 26));
    ASSERT_TRUE(file->Append(chunk).ok());
    expected += chunk;
  }
  ASSERT_TRUE(file->Sync().ok());
  EXPECT_EQ(Contents(fs_, Path("big")), expected);

  absl::StatusOr<std::unique_ptr<SequentialFile>> reader = fs_.NewSequentialFile(Path("big"));
  ASSERT_TRUE(reader.ok());
  std::string out;
  ASSERT_TRUE((*reader)->Skip(10).ok());
  EXPECT_EQ(*(*reader)->Read(70000, &out), 70000u);
  EXPECT_EQ(out, expected.substr(10, 70000));
  std::string rest;
  while (*(*reader)->Read(4096, &out) > 0) rest += out;
  EXPECT_EQ(rest, expected.substr(70010));
}

// NewWritableFile truncates; Truncate shortens and refuses to grow.
TEST_F(PosixFileSystemTest, TruncateAndNewWritableFile) {
  std::unique_ptr<WritableFile> file = OpenAppendable(fs_, Path("f"));
  ASSERT_TRUE(file->Append("0123456789").ok() && file->Close().ok());
  ASSERT_TRUE(fs_.Truncate(Path("f"), 4).ok());
  EXPECT_EQ(Contents(fs_, Path("f")), "0123");
  EXPECT_EQ(fs_.Truncate(Path("f"), 5).code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::unique_ptr<WritableFile>> fresh = fs_.NewWritableFile(Path("f"));
  ASSERT_TRUE(fresh.ok());
  ASSERT_TRUE((*fresh)->Append("new").ok() && (*fresh)->Close().ok());
  EXPECT_EQ(Contents(fs_, Path("f")), "new");
}

// Rename replaces the target; ListDir is sorted; Remove removes; CreateDir is idempotent.
TEST_F(PosixFileSystemTest, DirectoryOperations) {
  for (const char* name : {"b", "a", "c"}) {
    std::unique_ptr<WritableFile> file = OpenAppendable(fs_, Path(name));
    ASSERT_TRUE(file->Append(name).ok() && file->Close().ok());
  }
  ASSERT_TRUE(fs_.CreateDir(Path("sub")).ok());
  ASSERT_TRUE(fs_.CreateDir(Path("sub")).ok());
  EXPECT_THAT(*fs_.ListDir(dir_), ElementsAre("a", "b", "c", "sub"));
  ASSERT_TRUE(fs_.Rename(Path("a"), Path("c")).ok());
  EXPECT_EQ(Contents(fs_, Path("c")), "a");
  ASSERT_TRUE(fs_.Remove(Path("b")).ok());
  ASSERT_TRUE(fs_.SyncDir(dir_).ok());
  EXPECT_THAT(*fs_.ListDir(dir_), ElementsAre("c", "sub"));
  EXPECT_FALSE(fs_.Exists(Path("a")));
  EXPECT_EQ(fs_.CreateDir(Path("c")).code(), absl::StatusCode::kFailedPrecondition);
}

// Errors for missing files are NOT_FOUND and name the path.
TEST_F(PosixFileSystemTest, MissingFilesAreNotFoundAndNamed) {
  const std::string missing = Path("missing");
  for (const absl::Status& s :
       {fs_.NewSequentialFile(missing).status(), fs_.ReadFileToString(missing).status(),
        fs_.FileSize(missing).status(), fs_.Remove(missing), fs_.Rename(missing, Path("x")),
        fs_.ListDir(missing).status(), fs_.SyncDir(missing), fs_.Truncate(missing, 0),
        fs_.NewAppendableFile(Path("missing/wal")).status()}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
    EXPECT_THAT(s.message(), HasSubstr(missing));
    EXPECT_THAT(s.message(), HasSubstr("No such file or directory"));
  }
  EXPECT_FALSE(fs_.Exists(missing));
}

}  // namespace
}  // namespace hourglass
