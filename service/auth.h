// Bearer tokens and per-queue permissions (--auth_tokens_file).
//
// The tokens file holds one token a line: `<token> <queues> <permissions>`, where queues is `*`
// (every queue) or a comma list of queue names, and permissions a comma list of `schedule`,
// `consume` and `admin`. `#` starts a comment; blank lines are skipped:
//
//   # billing's producer and its workers; ops may do anything anywhere.
//   3f9c0d1e8a7b6c5d4e3f2a1b0c9d8e7f  billing          schedule
//   9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d  billing,refunds  consume
//   0f1e2d3c4b5a69788796a5b4c3d2e1f0  *                schedule,consume,admin
//
//   absl::StatusOr<std::unique_ptr<TokenFile>> tokens = TokenFile::Create(path, absl::Seconds(1));
//   absl::StatusOr<Caller> caller = Authenticate(tokens->get(), {"Bearer 3f9c..."});
//   absl::Status allowed = caller->Check("billing", Permission::kSchedule);  // OK
//
// Tokens are kept only as SHA-256 digests; a presented token is hashed and compared with every
// configured digest in constant time (CRYPTO_memcmp, no early exit), so response times do not
// tell how much of a guess was right. No function here puts a token into a message or a log line.
#ifndef HOURGLASS_SERVICE_AUTH_H_
#define HOURGLASS_SERVICE_AUTH_H_

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace hourglass {

// What a token may do in a queue. Bit flags.
enum class Permission : uint8_t {
  kSchedule = 1,  // Schedule, ScheduleBatch, Cancel, Reschedule
  kConsume = 2,   // Lease, Ack, AckBatch, Nack, ExtendLease
  kAdmin = 4,     // ListTasks, RetryTask
};
// "schedule", "consume", "admin".
absl::string_view PermissionName(Permission permission);

// What one line of the tokens file grants.
struct TokenGrant {
  bool Allows(absl::string_view queue, Permission permission) const;
  // Any permission on `queue`: the token may see the queue's tasks (GetStatus).
  bool Sees(absl::string_view queue) const;

  bool every_queue = false;                 // `*`
  absl::flat_hash_set<std::string> queues;  // when not every_queue
  uint8_t permissions = 0;                  // Permission bits
  int line = 0;                             // in the tokens file, from 1
};

// The tokens of one version of the file. Immutable once parsed: thread-safe.
class TokenTable {
 public:
  static constexpr size_t kMinTokenBytes = 16;
  static constexpr size_t kMaxTokenBytes = 4096;

  // Parses the contents of a tokens file. Errors are INVALID_ARGUMENT "<file_name>:<line>: what
  // is wrong" and never contain a token. A file must define at least one token.
  static absl::StatusOr<TokenTable> Parse(absl::string_view contents, absl::string_view file_name);
  // Reads and parses the file at `path`.
  static absl::StatusOr<TokenTable> ReadFile(const std::string& path);

  // The grant of `token`, or null when no line has it. Hashes `token` once and compares the
  // digest with every configured one, without early exit.
  const TokenGrant* Find(absl::string_view token) const;

  // OK when `token` may use `permission` on `queue`; UNAUTHENTICATED for an unknown token,
  // PERMISSION_DENIED otherwise.
  absl::Status Authorize(absl::string_view token, absl::string_view queue,
                         Permission permission) const;

  size_t size() const { return entries_.size(); }

 private:
  using Digest = std::array<uint8_t, 32>;  // SHA-256
  struct Entry {
    Digest digest;
    TokenGrant grant;
  };
  // SHA-256 of `token`; false only if OpenSSL fails (out of memory).
  static bool Hash(absl::string_view token, Digest* digest);

  std::vector<Entry> entries_;
};

// The tokens file, re-read when it changes: a thread ("hg-auth-reload") polls its stat() every
// `poll_interval` (device, inode, size, mtime and ctime: an edit in place, a rename over it or a
// Kubernetes Secret's symlink swap all show). A new version that does not parse, or a file that
// cannot be read, is logged (auth_tokens_reload_failed, with the file and line) and the previous
// tokens stay in force. Thread-safe.
class TokenFile {
 public:
  // Reads and parses `path`; fails with the parse error (file and line) or the read error.
  // poll_interval <= 0: no thread, reloads only through ReloadIfChanged().
  static absl::StatusOr<std::unique_ptr<TokenFile>> Create(std::string path,
                                                           absl::Duration poll_interval);
  ~TokenFile();  // stops the thread

  // The tokens in force. The table stays valid while the pointer is held, across reloads
  // (shared_ptr: a call in flight keeps the version it was authenticated with).
  std::shared_ptr<const TokenTable> Current() const ABSL_LOCKS_EXCLUDED(mu_);

  // Re-reads the file if its stat() changed since the last look. Returns the result of the
  // re-read (OK when unchanged); on an error the previous tokens stay in force.
  absl::Status ReloadIfChanged() ABSL_LOCKS_EXCLUDED(reload_mu_, mu_);

  const std::string& path() const { return path_; }

 private:
  struct Stamp {
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    bool operator==(const Stamp&) const = default;
  };
  static absl::StatusOr<Stamp> StampOf(const std::string& path);

  TokenFile(std::string path, Stamp stamp, TokenTable table);
  void PollLoop(absl::Duration poll_interval) ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  const std::string path_;

  absl::Mutex reload_mu_;  // serialises reloads (the thread and ReloadIfChanged())
  std::optional<Stamp> stamp_ ABSL_GUARDED_BY(reload_mu_);  // none: the last stat() failed

  mutable absl::Mutex mu_;
  std::shared_ptr<const TokenTable> table_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::thread poller_;
};

// Who makes a call: the grant of its token, or anyone when authentication is off. Cheap to copy.
class Caller {
 public:
  // Authentication is off: every check passes.
  static Caller Anyone() { return Caller(nullptr, nullptr); }

  bool authenticated() const { return grant_ != nullptr; }

  // OK, or PERMISSION_DENIED naming the permission and the queue.
  absl::Status Check(absl::string_view queue, Permission permission) const;
  // OK when the token has `permission` on every queue (`*`), else PERMISSION_DENIED.
  absl::Status CheckEveryQueue(Permission permission) const;
  // Whether the caller may see tasks of `queue` (any permission on it).
  bool Sees(absl::string_view queue) const;

 private:
  friend absl::StatusOr<Caller> Authenticate(const TokenFile* tokens,
                                             absl::Span<const absl::string_view> authorization);
  Caller(std::shared_ptr<const TokenTable> table, const TokenGrant* grant)
      : table_(std::move(table)), grant_(grant) {}

  std::shared_ptr<const TokenTable> table_;  // keeps *grant_ alive
  const TokenGrant* grant_;                  // null: anyone
};

// The caller of an RPC from the values of its `authorization` metadata. `tokens` null: auth is
// off, Caller::Anyone(). Otherwise exactly one value "Bearer <token>" (the scheme in any case)
// with a configured token, else UNAUTHENTICATED (the message never contains the token).
absl::StatusOr<Caller> Authenticate(const TokenFile* tokens,
                                    absl::Span<const absl::string_view> authorization);

}  // namespace hourglass

#endif  // HOURGLASS_SERVICE_AUTH_H_
