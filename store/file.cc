#include "store/file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hourglass {
namespace {

// strerror_r comes in a GNU flavour (returns the message) and an XSI one (fills the buffer).
[[maybe_unused]] const char* StrErrorResult(const char* message, const char*) { return message; }
[[maybe_unused]] const char* StrErrorResult(int, const char* buffer) { return buffer; }

std::string ErrnoText(int error_number) {
  char buffer[256] = "";
  return StrErrorResult(strerror_r(error_number, buffer, sizeof(buffer)), buffer);
}

// `context` names the operation, the path and where it matters the offset: "open /d/wal".
absl::Status ErrnoToStatus(int error_number, absl::string_view context) {
  const std::string message = absl::StrCat(context, ": ", ErrnoText(error_number));
  switch (error_number) {
    case ENOENT:
      return absl::NotFoundError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case ENOTDIR:
    case EISDIR:
    case ENOTEMPTY:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

// open(2), retried on EINTR.
int OpenRetrying(const char* path, int flags, mode_t mode = 0644) {
  int fd;
  do {
    fd = ::open(path, flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

// fsync(2)/fdatasync(2), retried on EINTR (nothing was done when it is reported).
int SyncRetrying(int fd, bool data_only) {
  int rc;
  do {
    rc = data_only ? ::fdatasync(fd) : ::fsync(fd);
  } while (rc < 0 && errno == EINTR);
  return rc;
}

class PosixWritableFile final : public WritableFile {
 public:
  static constexpr size_t kBufferSize = 64 * 1024;

  PosixWritableFile(std::string path, int fd, uint64_t file_size)
      : path_(std::move(path)), fd_(fd), file_offset_(file_size) {
    buffer_.reserve(kBufferSize);
  }
  ~PosixWritableFile() override {
    if (fd_ >= 0) (void)Close();
  }

  absl::Status Append(absl::string_view data) override {
    if (!status_.ok()) return status_;
    const size_t copied = std::min(data.size(), kBufferSize - buffer_.size());
    buffer_.append(data.data(), copied);
    data.remove_prefix(copied);
    if (data.empty()) return absl::OkStatus();
    if (absl::Status s = Flush(); !s.ok()) return s;
    if (data.size() < kBufferSize) {
      buffer_.assign(data.data(), data.size());
      return absl::OkStatus();
    }
    return WriteUnbuffered(data);
  }

  absl::Status Flush() override {
    if (!status_.ok()) return status_;
    absl::Status s = WriteUnbuffered(buffer_);
    buffer_.clear();
    return s;
  }

  absl::Status Sync() override {
    if (absl::Status s = Flush(); !s.ok()) return s;
    if (SyncRetrying(fd_, /*data_only=*/true) < 0) {
      return Fail(ErrnoToStatus(errno, absl::StrCat("fdatasync ", path_)));
    }
    return absl::OkStatus();
  }

  absl::Status Close() override {
    if (fd_ < 0) return status_;
    absl::Status s = Flush();
    // close(2) is not retried on EINTR: on Linux the descriptor is released either way.
    if (::close(fd_) < 0 && s.ok()) s = ErrnoToStatus(errno, absl::StrCat("close ", path_));
    fd_ = -1;
    if (status_.ok()) {
      status_ = s.ok() ? absl::FailedPreconditionError(absl::StrCat(path_, " is closed")) : s;
    }
    return s;
  }

 private:
  absl::Status WriteUnbuffered(absl::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return Fail(
            ErrnoToStatus(errno, absl::StrCat("write ", path_, " at offset ", file_offset_)));
      }
      data.remove_prefix(static_cast<size_t>(n));
      file_offset_ += static_cast<uint64_t>(n);
    }
    return absl::OkStatus();
  }

  absl::Status Fail(absl::Status s) {
    status_ = s;
    return s;
  }

  const std::string path_;
  int fd_;
  uint64_t file_offset_;  // of the end of what was handed to the OS
  std::string buffer_;
  absl::Status status_;  // sticky: the first error
};

class PosixSequentialFile final : public SequentialFile {
 public:
  PosixSequentialFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixSequentialFile() override { ::close(fd_); }

  absl::StatusOr<size_t> Read(size_t n, std::string* out) override {
    out->resize(n);
    size_t done = 0;
    while (done < n) {
      const ssize_t got = ::read(fd_, out->data() + done, n - done);
      if (got < 0) {
        if (errno == EINTR) continue;
        const int error_number = errno;
        out->clear();
        return ErrnoToStatus(error_number,
                             absl::StrCat("read ", path_, " at offset ", offset_ + done));
      }
      if (got == 0) break;
      done += static_cast<size_t>(got);
    }
    out->resize(done);
    offset_ += done;
    return done;
  }

  absl::Status Skip(uint64_t n) override {
    if (::lseek(fd_, static_cast<off_t>(n), SEEK_CUR) < 0) {
      return ErrnoToStatus(errno, absl::StrCat("seek ", path_, " at offset ", offset_));
    }
    offset_ += n;
    return absl::OkStatus();
  }

 private:
  const std::string path_;
  const int fd_;
  uint64_t offset_ = 0;
};

absl::StatusOr<std::unique_ptr<WritableFile>> OpenPosixWritable(const std::string& path,
                                                                int flags) {
  const int fd = OpenRetrying(path.c_str(), O_WRONLY | O_CREAT | flags);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  struct stat st;
  if (::fstat(fd, &st) < 0) {
    const int error_number = errno;
    ::close(fd);
    return ErrnoToStatus(error_number, absl::StrCat("stat ", path));
  }
  return std::make_unique<PosixWritableFile>(path, fd, static_cast<uint64_t>(st.st_size));
}

}  // namespace

PosixFileSystem& PosixFileSystem::Get() {
  static PosixFileSystem* const file_system = new PosixFileSystem();
  return *file_system;
}

absl::StatusOr<std::unique_ptr<WritableFile>> PosixFileSystem::NewAppendableFile(
    const std::string& path) {
  return OpenPosixWritable(path, O_APPEND);
}

absl::StatusOr<std::unique_ptr<WritableFile>> PosixFileSystem::NewWritableFile(
    const std::string& path) {
  return OpenPosixWritable(path, O_TRUNC);
}

absl::StatusOr<std::unique_ptr<SequentialFile>> PosixFileSystem::NewSequentialFile(
    const std::string& path) {
  const int fd = OpenRetrying(path.c_str(), O_RDONLY);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  return std::make_unique<PosixSequentialFile>(path, fd);
}

absl::StatusOr<std::string> PosixFileSystem::ReadFileToString(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SequentialFile>> file = NewSequentialFile(path);
  if (!file.ok()) return file.status();
  std::string contents;
  std::string chunk;
  while (true) {
    absl::StatusOr<size_t> n = (*file)->Read(1 << 20, &chunk);
    if (!n.ok()) return n.status();
    if (*n == 0) return contents;
    contents += chunk;
  }
}

absl::StatusOr<std::vector<std::string>> PosixFileSystem::ListDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoToStatus(errno, absl::StrCat("opendir ", dir));
  std::vector<std::string> names;
  while (true) {
    errno = 0;
    const struct dirent* entry = ::readdir(d);
    if (entry == nullptr) break;
    const absl::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  const int error_number = errno;
  ::closedir(d);
  if (error_number != 0) return ErrnoToStatus(error_number, absl::StrCat("readdir ", dir));
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status PosixFileSystem::Rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) < 0) {
    return ErrnoToStatus(errno, absl::StrCat("rename ", from, " to ", to));
  }
  return absl::OkStatus();
}

absl::Status PosixFileSystem::Remove(const std::string& path) {
  if (::unlink(path.c_str()) < 0) return ErrnoToStatus(errno, absl::StrCat("remove ", path));
  return absl::OkStatus();
}

absl::Status PosixFileSystem::CreateDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) == 0) return absl::OkStatus();
  const int error_number = errno;
  struct stat st;
  if (error_number == EEXIST && ::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat("mkdir ", path, ": exists and is not a directory"));
  }
  return ErrnoToStatus(error_number, absl::StrCat("mkdir ", path));
}

absl::Status PosixFileSystem::SyncDir(const std::string& dir) {
  const int fd = OpenRetrying(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open directory ", dir));
  absl::Status s;
  if (SyncRetrying(fd, /*data_only=*/false) < 0) {
    s = ErrnoToStatus(errno, absl::StrCat("fsync directory ", dir));
  }
  ::close(fd);
  return s;
}

absl::Status PosixFileSystem::Truncate(const std::string& path, uint64_t size) {
  const int fd = OpenRetrying(path.c_str(), O_WRONLY);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  absl::Status s;
  struct stat st;
  if (::fstat(fd, &st) < 0) {
    s = ErrnoToStatus(errno, absl::StrCat("stat ", path));
  } else if (size > static_cast<uint64_t>(st.st_size)) {
    s = absl::InvalidArgumentError(
        absl::StrCat("truncate ", path, " to ", size, " bytes: the file has only ", st.st_size));
  } else {
    int rc;
    do {
      rc = ::ftruncate(fd, static_cast<off_t>(size));
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
      s = ErrnoToStatus(errno, absl::StrCat("truncate ", path, " to ", size, " bytes"));
    } else if (SyncRetrying(fd, /*data_only=*/false) < 0) {
      s = ErrnoToStatus(errno, absl::StrCat("fsync ", path));
    }
  }
  ::close(fd);
  return s;
}

absl::StatusOr<uint64_t> PosixFileSystem::FileSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) < 0) return ErrnoToStatus(errno, absl::StrCat("stat ", path));
  return static_cast<uint64_t>(st.st_size);
}

bool PosixFileSystem::Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// ---------------------------------------------------------------------------------------------
// FakeFileSystem

struct FakeFileSystem::Inode {
  std::string contents;  // flushed: what readers see
  std::string durable;   // as of the last Sync() (or Truncate())
};

namespace {

// "/data/wal" -> {"/data", "wal"}; "wal" -> {".", "wal"}; "/wal" -> {"/", "wal"}.
std::pair<std::string, std::string> SplitPath(absl::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash == absl::string_view::npos) return {".", std::string(path)};
  return {slash == 0 ? "/" : std::string(path.substr(0, slash)),
          std::string(path.substr(slash + 1))};
}

// Without trailing slashes ("/data/" -> "/data"), except for "/".
std::string NormalizeDir(absl::string_view dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
  return std::string(dir);
}

absl::Status DeadFileError(absl::string_view path) {
  return absl::FailedPreconditionError(absl::StrCat(path, " was opened before a simulated crash"));
}

}  // namespace

class FakeFileSystem::FakeWritableFile final : public WritableFile {
 public:
  FakeWritableFile(FakeFileSystem& fs, std::string path, std::shared_ptr<Inode> inode,
                   uint64_t epoch)
      : fs_(fs), path_(std::move(path)), inode_(std::move(inode)), epoch_(epoch) {}
  ~FakeWritableFile() override {
    if (!closed_) (void)Close();
  }

  absl::Status Append(absl::string_view data) override {
    absl::MutexLock lock(&fs_.mu_);
    if (absl::Status s = CheckUsableLocked(); !s.ok()) return s;
    if (absl::Status s = fs_.CheckFaultLocked(Op::kAppend); !s.ok()) return Fail(s);
    if (fs_.disk_full_armed_ && data.size() > fs_.disk_free_bytes_) {
      // A short write: the buffer and what fits reach the file, then ENOSPC.
      const uint64_t offset = inode_->contents.size() + buffer_.size() + fs_.disk_free_bytes_;
      inode_->contents += buffer_;
      inode_->contents.append(data.data(), fs_.disk_free_bytes_);
      buffer_.clear();
      fs_.stats_.bytes_appended += fs_.disk_free_bytes_;
      fs_.disk_free_bytes_ = 0;
      return Fail(absl::ResourceExhaustedError(absl::StrCat(
          "write ", path_, " at offset ", offset, ": No space left on device (fake disk full)")));
    }
    if (fs_.disk_full_armed_) fs_.disk_free_bytes_ -= data.size();
    buffer_.append(data.data(), data.size());
    ++fs_.stats_.appends;
    fs_.stats_.bytes_appended += data.size();
    return absl::OkStatus();
  }

  absl::Status Flush() override {
    absl::MutexLock lock(&fs_.mu_);
    if (absl::Status s = CheckUsableLocked(); !s.ok()) return s;
    if (absl::Status s = fs_.CheckFaultLocked(Op::kFlush); !s.ok()) return Fail(s);
    FlushLocked();
    return absl::OkStatus();
  }

  absl::Status Sync() override {
    absl::MutexLock lock(&fs_.mu_);
    if (absl::Status s = CheckUsableLocked(); !s.ok()) return s;
    FlushLocked();
    if (absl::Status s = fs_.CheckFaultLocked(Op::kSync); !s.ok()) return Fail(s);
    inode_->durable = inode_->contents;
    ++fs_.stats_.syncs;
    return absl::OkStatus();
  }

  absl::Status Close() override {
    absl::MutexLock lock(&fs_.mu_);
    if (closed_) return status_;
    closed_ = true;
    if (absl::Status s = CheckUsableLocked(); !s.ok()) return s;
    absl::Status s = fs_.CheckFaultLocked(Op::kClose);
    if (s.ok()) FlushLocked();
    status_ = s.ok() ? absl::FailedPreconditionError(absl::StrCat(path_, " is closed")) : s;
    return s;
  }

 private:
  absl::Status CheckUsableLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(fs_.mu_) {
    if (epoch_ != fs_.epoch_) return DeadFileError(path_);
    return status_;
  }
  void FlushLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(fs_.mu_) {
    inode_->contents += buffer_;
    buffer_.clear();
    ++fs_.stats_.flushes;
  }
  absl::Status Fail(absl::Status s) {
    status_ = s;
    return s;
  }

  FakeFileSystem& fs_;
  const std::string path_;
  const std::shared_ptr<Inode> inode_;
  const uint64_t epoch_;
  std::string buffer_;  // appended, not flushed: lost in any crash
  absl::Status status_;
  bool closed_ = false;
};

class FakeFileSystem::FakeSequentialFile final : public SequentialFile {
 public:
  FakeSequentialFile(FakeFileSystem& fs, std::string path, std::shared_ptr<Inode> inode,
                     uint64_t epoch)
      : fs_(fs), path_(std::move(path)), inode_(std::move(inode)), epoch_(epoch) {}

  absl::StatusOr<size_t> Read(size_t n, std::string* out) override {
    absl::MutexLock lock(&fs_.mu_);
    if (epoch_ != fs_.epoch_) return DeadFileError(path_);
    const std::string& contents = inode_->contents;
    if (offset_ >= contents.size()) {
      out->clear();
      return 0;
    }
    out->assign(contents, offset_, n);
    offset_ += out->size();
    return out->size();
  }

  absl::Status Skip(uint64_t n) override {
    absl::MutexLock lock(&fs_.mu_);
    if (epoch_ != fs_.epoch_) return DeadFileError(path_);
    offset_ += n;
    return absl::OkStatus();
  }

 private:
  FakeFileSystem& fs_;
  const std::string path_;
  const std::shared_ptr<Inode> inode_;
  const uint64_t epoch_;
  uint64_t offset_ = 0;
};

FakeFileSystem::FakeFileSystem() = default;
FakeFileSystem::~FakeFileSystem() = default;

void FakeFileSystem::SimulateCrash(const CrashMode& mode) {
  absl::MutexLock lock(&mu_);
  ++epoch_;
  std::mt19937_64 rng(mode.seed);
  // Each file once, in path order (deterministic for a seed).
  std::set<Inode*> done;
  for (auto& [dir_name, dir] : dirs_) {
    if (mode.undo_unsynced_dir_ops) dir.entries = dir.durable_entries;
    dir.durable_entries = dir.entries;
    for (auto& [name, inode] : dir.entries) {
      if (!done.insert(inode.get()).second) continue;
      std::string& contents = inode->contents;
      const std::string& durable = inode->durable;
      const bool appended_since_sync =
          absl::string_view(contents).substr(0, durable.size()) == durable;
      if (mode.data == CrashMode::UnsyncedData::kKeep) continue;
      if (!appended_since_sync || mode.data == CrashMode::UnsyncedData::kDrop) {
        contents = durable;
      } else {
        const size_t unsynced = contents.size() - durable.size();
        const size_t kept = static_cast<size_t>(rng() % (unsynced + 1));
        size_t zeroes = 0;
        if (mode.data == CrashMode::UnsyncedData::kTornPrefixZeroes) {
          zeroes = static_cast<size_t>(rng() % (unsynced - kept + 1));
        }
        contents.resize(durable.size() + kept);
        contents.append(zeroes, '\0');
      }
      inode->durable = contents;  // after a machine crash, what is on disk is what is durable
    }
  }
}

void FakeFileSystem::FailNth(Op op, int n, absl::Status error) {
  absl::MutexLock lock(&mu_);
  faults_.push_back({op, std::max(n, 1) - 1, std::move(error)});
}

void FakeFileSystem::SetDiskFullAfter(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  disk_full_armed_ = true;
  disk_free_bytes_ = bytes;
}

void FakeFileSystem::ClearFaults() {
  absl::MutexLock lock(&mu_);
  faults_.clear();
  disk_full_armed_ = false;
}

FakeFileSystem::Stats FakeFileSystem::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::Status FakeFileSystem::CheckFaultLocked(Op op) {
  absl::Status result;
  for (auto it = faults_.begin(); it != faults_.end();) {
    if (it->op != op) {
      ++it;
    } else if (it->countdown > 0) {
      --it->countdown;
      ++it;
    } else {
      if (result.ok()) result = it->error;
      it = faults_.erase(it);
    }
  }
  return result;
}

FakeFileSystem::Dir* FakeFileSystem::FindDirLocked(absl::string_view dir) {
  auto it = dirs_.find(NormalizeDir(dir));
  return it == dirs_.end() ? nullptr : &it->second;
}

std::shared_ptr<FakeFileSystem::Inode> FakeFileSystem::FindFileLocked(const std::string& path,
                                                                      Dir** dir,
                                                                      std::string* name) {
  auto [dir_name, base] = SplitPath(path);
  *dir = FindDirLocked(dir_name);
  *name = std::move(base);
  if (*dir == nullptr) return nullptr;
  auto it = (*dir)->entries.find(*name);
  return it == (*dir)->entries.end() ? nullptr : it->second;
}

absl::StatusOr<std::unique_ptr<WritableFile>> FakeFileSystem::OpenWritable(const std::string& path,
                                                                           bool truncate) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckFaultLocked(Op::kOpen); !s.ok()) return s;
  Dir* dir;
  std::string name;
  std::shared_ptr<Inode> inode = FindFileLocked(path, &dir, &name);
  if (dir == nullptr) {
    return absl::NotFoundError(absl::StrCat("open ", path, ": No such file or directory"));
  }
  if (inode == nullptr) {
    inode = std::make_shared<Inode>();
    dir->entries[name] = inode;
  } else if (truncate) {
    inode->contents.clear();
  }
  return std::make_unique<FakeWritableFile>(*this, path, std::move(inode), epoch_);
}

absl::StatusOr<std::unique_ptr<WritableFile>> FakeFileSystem::NewAppendableFile(
    const std::string& path) {
  return OpenWritable(path, /*truncate=*/false);
}

absl::StatusOr<std::unique_ptr<WritableFile>> FakeFileSystem::NewWritableFile(
    const std::string& path) {
  return OpenWritable(path, /*truncate=*/true);
}

absl::StatusOr<std::unique_ptr<SequentialFile>> FakeFileSystem::NewSequentialFile(
    const std::string& path) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckFaultLocked(Op::kOpen); !s.ok()) return s;
  Dir* dir;
  std::string name;
  std::shared_ptr<Inode> inode = FindFileLocked(path, &dir, &name);
  if (inode == nullptr) {
    return absl::NotFoundError(absl::StrCat("open ", path, ": No such file or directory"));
  }
  return std::make_unique<FakeSequentialFile>(*this, path, std::move(inode), epoch_);
}

absl::StatusOr<std::string> FakeFileSystem::ReadFileToString(const std::string& path) {
  absl::MutexLock lock(&mu_);
  Dir* dir;
  std::string name;
  std::shared_ptr<Inode> inode = FindFileLocked(path, &dir, &name);
  if (inode == nullptr) {
    return absl::NotFoundError(absl::StrCat("open ", path, ": No such file or directory"));
  }
  return inode->contents;
}

absl::StatusOr<std::vector<std::string>> FakeFileSystem::ListDir(const std::string& dir_name) {
  absl::MutexLock lock(&mu_);
  Dir* dir = FindDirLocked(dir_name);
  if (dir == nullptr) {
    return absl::NotFoundError(absl::StrCat("opendir ", dir_name, ": No such file or directory"));
  }
  std::vector<std::string> names;
  for (const auto& [name, inode] : dir->entries) names.push_back(name);
  return names;  // std::map: sorted
}

absl::Status FakeFileSystem::Rename(const std::string& from, const std::string& to) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckFaultLocked(Op::kRename); !s.ok()) return s;
  Dir* from_dir;
  std::string from_name;
  std::shared_ptr<Inode> inode = FindFileLocked(from, &from_dir, &from_name);
  Dir* to_dir;
  std::string to_name;
  FindFileLocked(to, &to_dir, &to_name);
  if (inode == nullptr || to_dir == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("rename ", from, " to ", to, ": No such file or directory"));
  }
  from_dir->entries.erase(from_name);
  to_dir->entries[to_name] = std::move(inode);
  ++stats_.renames;
  return absl::OkStatus();
}

absl::Status FakeFileSystem::Remove(const std::string& path) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckFaultLocked(Op::kRemove); !s.ok()) return s;
  Dir* dir;
  std::string name;
  if (FindFileLocked(path, &dir, &name) == nullptr) {
    return absl::NotFoundError(absl::StrCat("remove ", path, ": No such file or directory"));
  }
  dir->entries.erase(name);
  return absl::OkStatus();
}

absl::Status FakeFileSystem::CreateDir(const std::string& path) {
  absl::MutexLock lock(&mu_);
  dirs_.try_emplace(NormalizeDir(path));
  return absl::OkStatus();
}

absl::Status FakeFileSystem::SyncDir(const std::string& dir_name) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckFaultLocked(Op::kSyncDir); !s.ok()) return s;
  Dir* dir = FindDirLocked(dir_name);
  if (dir == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("open directory ", dir_name, ": No such file or directory"));
  }
  dir->durable_entries = dir->entries;
  ++stats_.sync_dirs;
  return absl::OkStatus();
}

absl::Status FakeFileSystem::Truncate(const std::string& path, uint64_t size) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckFaultLocked(Op::kTruncate); !s.ok()) return s;
  Dir* dir;
  std::string name;
  std::shared_ptr<Inode> inode = FindFileLocked(path, &dir, &name);
  if (inode == nullptr) {
    return absl::NotFoundError(absl::StrCat("open ", path, ": No such file or directory"));
  }
  if (size > inode->contents.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "truncate ", path, " to ", size, " bytes: the file has only ", inode->contents.size()));
  }
  inode->contents.resize(size);
  inode->durable = inode->contents;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> FakeFileSystem::FileSize(const std::string& path) {
  absl::MutexLock lock(&mu_);
  Dir* dir;
  std::string name;
  std::shared_ptr<Inode> inode = FindFileLocked(path, &dir, &name);
  if (inode == nullptr) {
    return absl::NotFoundError(absl::StrCat("stat ", path, ": No such file or directory"));
  }
  return inode->contents.size();
}

bool FakeFileSystem::Exists(const std::string& path) {
  absl::MutexLock lock(&mu_);
  Dir* dir;
  std::string name;
  return FindFileLocked(path, &dir, &name) != nullptr || FindDirLocked(path) != nullptr;
}

}  // namespace hourglass
