#include "service/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "service/logging.h"

namespace hourglass {

namespace {

constexpr size_t kMaxQueueNameBytes = 200;

// RFC 6750's b64token: what a Bearer token may hold.
bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' ||
         c == '~' || c == '+' || c == '/' || c == '=';
}

bool IsQueueChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}

std::optional<Permission> ParsePermission(absl::string_view name) {
  if (name == "schedule") return Permission::kSchedule;
  if (name == "consume") return Permission::kConsume;
  if (name == "admin") return Permission::kAdmin;
  return std::nullopt;
}

int64_t Nanoseconds(const timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

}  // namespace

absl::string_view PermissionName(Permission permission) {
  switch (permission) {
    case Permission::kSchedule:
      return "schedule";
    case Permission::kConsume:
      return "consume";
    case Permission::kAdmin:
      return "admin";
  }
  return "unknown";
}

bool TokenGrant::Allows(absl::string_view queue, Permission permission) const {
  if ((permissions & static_cast<uint8_t>(permission)) == 0) return false;
  return every_queue || queues.contains(queue);
}

bool TokenGrant::Sees(absl::string_view queue) const {
  return permissions != 0 && (every_queue || queues.contains(queue));
}

bool TokenTable::Hash(absl::string_view token, Digest* digest) {
  unsigned int size = 0;
  const int ok =
      EVP_Digest(token.data(), token.size(), digest->data(), &size, EVP_sha256(), nullptr);
  return ok == 1 && size == digest->size();
}

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view contents,
                                             absl::string_view file_name) {
  TokenTable table;
  absl::flat_hash_map<std::string, int> line_of_digest;  // digest bytes -> line
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    auto fail = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(file_name, ":", line_number, ": ", what));
    };
    // '#' is neither a token, queue nor permission character: the rest of the line is a comment.
    line = line.substr(0, std::min(line.find('#'), line.size()));
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    if (fields.size() != 3) {
      return fail(absl::StrCat("expected 3 fields \"<token> <queues> <permissions>\", got ",
                               fields.size()));
    }
    const absl::string_view token = fields[0];
    if (token.size() < kMinTokenBytes || token.size() > kMaxTokenBytes) {
      return fail(absl::StrCat("a token must be ", kMinTokenBytes, " to ", kMaxTokenBytes,
                               " characters long, got ", token.size(),
                               " (make one with `openssl rand -hex 32`)"));
    }
    for (char c : token) {
      if (!IsTokenChar(c)) {
        return fail("a token may hold only letters, digits and - . _ ~ + / = (RFC 6750 b64token)");
      }
    }
    Entry entry;
    entry.grant.line = line_number;
    if (fields[1] == "*") {
      entry.grant.every_queue = true;
    } else {
      for (absl::string_view queue : absl::StrSplit(fields[1], ',')) {
        if (queue == "*") return fail("queues must be either * alone or a list of queue names");
        if (queue.empty() || queue.size() > kMaxQueueNameBytes) {
          return fail(absl::StrCat("a queue name must be 1 to ", kMaxQueueNameBytes,
                                   " characters long, got \"", queue, "\""));
        }
        for (char c : queue) {
          if (!IsQueueChar(c)) {
            return fail(
                absl::StrCat("a queue name must match [A-Za-z0-9._-]{1,200}, got \"", queue, "\""));
          }
        }
        entry.grant.queues.insert(std::string(queue));
      }
    }
    for (absl::string_view name : absl::StrSplit(fields[2], ',')) {
      std::optional<Permission> permission = ParsePermission(name);
      if (!permission.has_value()) {
        return fail(absl::StrCat("unknown permission \"", name,
                                 "\"; permissions are a comma list of schedule, consume, admin"));
      }
      entry.grant.permissions |= static_cast<uint8_t>(*permission);
    }
    if (!Hash(token, &entry.digest)) return fail("cannot hash the token (OpenSSL failed)");
    const std::string key(entry.digest.begin(), entry.digest.end());
    if (auto [it, inserted] = line_of_digest.emplace(key, line_number); !inserted) {
      return fail(absl::StrCat("the same token as line ", it->second,
                               "; give each token one line with all its queues and permissions"));
    }
    table.entries_.push_back(std::move(entry));
  }
  if (table.entries_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name,
                     ": no tokens; every line must be \"<token> <queues> <permissions>\", a "
                     "# comment or blank"));
  }
  return table;
}

absl::StatusOr<TokenTable> TokenTable::ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read --auth_tokens_file \"", path, "\": ", std::strerror(errno)));
  }
  std::stringstream contents;
  contents << file.rdbuf();
  if (file.bad()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read --auth_tokens_file \"", path, "\": ", std::strerror(errno)));
  }
  return Parse(contents.str(), path);
}

const TokenGrant* TokenTable::Find(absl::string_view token) const {
  Digest digest{};
  if (!Hash(token, &digest)) return nullptr;  // refused, never matched by accident
  const TokenGrant* found = nullptr;
  // Every entry is compared, whatever matched before: the time depends only on the number of
  // entries. Digests are unique (Parse refuses a repeated token), so at most one matches.
  for (const Entry& entry : entries_) {
    const bool match = CRYPTO_memcmp(entry.digest.data(), digest.data(), digest.size()) == 0;
    found = match ? &entry.grant : found;
  }
  return found;
}

absl::Status TokenTable::Authorize(absl::string_view token, absl::string_view queue,
                                   Permission permission) const {
  const TokenGrant* grant = Find(token);
  if (grant == nullptr) return absl::UnauthenticatedError("the bearer token is not valid");
  if (!grant->Allows(queue, permission)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the token may not ", PermissionName(permission), " in queue \"", queue, "\""));
  }
  return absl::OkStatus();
}

absl::Status Caller::Check(absl::string_view queue, Permission permission) const {
  if (grant_ == nullptr || grant_->Allows(queue, permission)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("the token may not ", PermissionName(permission), " in queue \"", queue, "\""));
}

absl::Status Caller::CheckEveryQueue(Permission permission) const {
  if (grant_ == nullptr || (grant_->every_queue && grant_->Allows("", permission))) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat("the token may not ", PermissionName(permission),
                                                  " in every queue (*); name a queue it may ",
                                                  PermissionName(permission), " in"));
}

bool Caller::Sees(absl::string_view queue) const {
  return grant_ == nullptr || grant_->Sees(queue);
}

absl::StatusOr<Caller> Authenticate(const TokenFile* tokens,
                                    absl::Span<const absl::string_view> authorization) {
  if (tokens == nullptr) return Caller::Anyone();
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "no credentials: send the metadata \"authorization: Bearer <token>\"");
  }
  if (authorization.size() > 1) {
    return absl::UnauthenticatedError("more than one authorization metadata value; send one");
  }
  constexpr absl::string_view kScheme = "bearer ";
  const absl::string_view value = authorization.front();
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError(
        "the authorization metadata must be \"Bearer <token>\" (the Bearer scheme)");
  }
  std::shared_ptr<const TokenTable> table = tokens->Current();
  const TokenGrant* grant = table->Find(absl::StripAsciiWhitespace(value.substr(kScheme.size())));
  if (grant == nullptr) return absl::UnauthenticatedError("the bearer token is not valid");
  return Caller(std::move(table), grant);
}

absl::StatusOr<TokenFile::Stamp> TokenFile::StampOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot stat --auth_tokens_file \"", path, "\": ", std::strerror(errno)));
  }
  return Stamp{.device = st.st_dev,
               .inode = st.st_ino,
               .size = st.st_size,
               .mtime_ns = Nanoseconds(st.st_mtim),
               .ctime_ns = Nanoseconds(st.st_ctim)};
}

absl::StatusOr<std::unique_ptr<TokenFile>> TokenFile::Create(std::string path,
                                                             absl::Duration poll_interval) {
  // The stamp is taken before the read: a change during the read shows at the next poll.
  absl::StatusOr<Stamp> stamp = StampOf(path);
  if (!stamp.ok()) return stamp.status();
  absl::StatusOr<TokenTable> table = TokenTable::ReadFile(path);
  if (!table.ok()) return table.status();
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0) {
    LogWarning("auth_tokens_file_world_readable")
        .Str("file", path)
        .Str("action", "chmod o-r the file: it holds secrets");
  }
  auto file = std::unique_ptr<TokenFile>(new TokenFile(std::move(path), *stamp, *std::move(table)));
  if (poll_interval > absl::ZeroDuration()) {
    TokenFile* self = file.get();
    file->poller_ = std::thread([self, poll_interval] {
      pthread_setname_np(pthread_self(), "hg-auth-reload");
      self->PollLoop(poll_interval);
    });
  }
  return file;
}

TokenFile::TokenFile(std::string path, Stamp stamp, TokenTable table)
    : path_(std::move(path)),
      stamp_(stamp),
      table_(std::make_shared<const TokenTable>(std::move(table))) {}

TokenFile::~TokenFile() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (poller_.joinable()) poller_.join();
}

std::shared_ptr<const TokenTable> TokenFile::Current() const {
  absl::MutexLock lock(&mu_);
  return table_;
}

absl::Status TokenFile::ReloadIfChanged() {
  absl::MutexLock reload_lock(&reload_mu_);
  absl::StatusOr<Stamp> stamp = StampOf(path_);
  if (!stamp.ok()) {
    // Logged once per disappearance, not at every poll.
    if (stamp_.has_value()) {
      LogError("auth_tokens_reload_failed")
          .Str("error", stamp.status().message())
          .Str("action", "kept the previous tokens");
    }
    stamp_.reset();
    return stamp.status();
  }
  if (stamp_.has_value() && *stamp_ == *stamp) return absl::OkStatus();
  stamp_ = *stamp;
  absl::StatusOr<TokenTable> table = TokenTable::ReadFile(path_);
  if (!table.ok()) {
    LogError("auth_tokens_reload_failed")
        .Str("error", table.status().message())
        .Str("action", "kept the previous tokens");
    return table.status();
  }
  const int64_t tokens = static_cast<int64_t>(table->size());
  {
    absl::MutexLock lock(&mu_);
    table_ = std::make_shared<const TokenTable>(*std::move(table));
  }
  LogInfo("auth_tokens_reloaded").Str("file", path_).Int("tokens", tokens);
  return absl::OkStatus();
}

void TokenFile::PollLoop(absl::Duration poll_interval) {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), poll_interval)) return;
    }
    ReloadIfChanged().IgnoreError();
  }
}

}  // namespace hourglass
