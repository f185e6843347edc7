// Unit tests of service/auth: the tokens file parser (every malformed line names the file and the
// line and never the token), the decisions of TokenTable::Authorize and Caller, Authenticate's
// reading of the authorization metadata, and TokenFile's reloads (a bad new file keeps the old
// tokens).
#include "service/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace hourglass {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Tokens of the tests: 16+ characters of the RFC 6750 alphabet.
constexpr absl::string_view kProducer = "producer-token-0123456789";
constexpr absl::string_view kWorker = "worker.token~0123456789+/=";
constexpr absl::string_view kOps = "ops_token_abcdefghijklmnop";

constexpr absl::string_view kFile = "tokens.txt";

std::string ThreeTokens() {
  return absl::StrCat("# producers and workers of billing; ops everywhere\n", kProducer,
                      " billing,refunds schedule\n", "\n", kWorker, "\tbilling\tconsume  # tab\n",
                      kOps, " * schedule,consume,admin\r\n");
}

TokenTable MustParse(const std::string& contents) {
  absl::StatusOr<TokenTable> table = TokenTable::Parse(contents, kFile);
  EXPECT_TRUE(table.ok()) << table.status();
  return std::move(table).value();
}

// Parses `contents`, which must fail; returns the message after checking that it is
// INVALID_ARGUMENT, starts with "tokens.txt:<line>: " and holds no token of the file.
std::string ParseError(const std::string& contents, int line) {
  absl::StatusOr<TokenTable> table = TokenTable::Parse(contents, kFile);
  if (table.ok()) {
    ADD_FAILURE() << "parsed: " << contents;
    return "";
  }
  EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(table.status().message());
  EXPECT_THAT(message, ::testing::StartsWith(absl::StrCat(kFile, ":", line, ": ")));
  for (absl::string_view token : {kProducer, kWorker, kOps}) {
    EXPECT_THAT(message, Not(HasSubstr(std::string(token))));
  }
  return message;
}

// Parses every line of a well-formed file with its queues, permissions and line numbers.
TEST(TokenTableTest, ParsesQueuesPermissionsAndLines) {
  const TokenTable table = MustParse(ThreeTokens());
  EXPECT_EQ(table.size(), 3u);
  const TokenGrant* producer = table.Find(kProducer);
  ASSERT_NE(producer, nullptr);
  EXPECT_EQ(producer->line, 2);
  EXPECT_FALSE(producer->every_queue);
  EXPECT_THAT(producer->queues, ::testing::UnorderedElementsAre("billing", "refunds"));
  EXPECT_EQ(producer->permissions, static_cast<uint8_t>(Permission::kSchedule));
  const TokenGrant* worker = table.Find(kWorker);
  ASSERT_NE(worker, nullptr);
  EXPECT_EQ(worker->line, 4);
  EXPECT_THAT(worker->queues, ::testing::UnorderedElementsAre("billing"));
  EXPECT_EQ(worker->permissions, static_cast<uint8_t>(Permission::kConsume));
  const TokenGrant* ops = table.Find(kOps);
  ASSERT_NE(ops, nullptr);
  EXPECT_EQ(ops->line, 5);
  EXPECT_TRUE(ops->every_queue);
  EXPECT_EQ(ops->permissions, 7);
}

// Only the exact token matches: not a prefix, an extension, another case or an empty string.
TEST(TokenTableTest, FindMatchesOnlyTheExactToken) {
  const TokenTable table = MustParse(ThreeTokens());
  EXPECT_EQ(table.Find(kProducer.substr(0, kProducer.size() - 1)), nullptr);
  EXPECT_EQ(table.Find(absl::StrCat(kProducer, "x")), nullptr);
  EXPECT_EQ(table.Find("PRODUCER-TOKEN-0123456789"), nullptr);
  EXPECT_EQ(table.Find(""), nullptr);
  EXPECT_EQ(table.Find(kWorker)->line, 4);
}

// Finds the right one of many tokens, whichever line it is on.
TEST(TokenTableTest, FindsEachOfManyTokens) {
  std::string contents;
  for (int i = 0; i < 500; ++i)
    absl::StrAppend(&contents, "token-number-", 100000 + i, " q", i, " consume\n");
  const TokenTable table = MustParse(contents);
  ASSERT_EQ(table.size(), 500u);
  for (int i : {0, 1, 250, 498, 499}) {
    const TokenGrant* grant = table.Find(absl::StrCat("token-number-", 100000 + i));
    ASSERT_NE(grant, nullptr) << i;
    EXPECT_EQ(grant->line, i + 1);
    EXPECT_TRUE(grant->Allows(absl::StrCat("q", i), Permission::kConsume));
  }
}

// Every kind of malformed line is refused with the file, the line and what is wrong.
TEST(TokenTableTest, MalformedLinesNameFileAndLine) {
  const std::string ok = absl::StrCat(kOps, " * admin\n");
  EXPECT_THAT(ParseError(absl::StrCat(ok, kProducer, " billing\n"), 2),
              HasSubstr("expected 3 fields \"<token> <queues> <permissions>\", got 2"));
  EXPECT_THAT(ParseError(absl::StrCat(ok, "\n", kProducer, " billing schedule extra\n"), 3),
              HasSubstr("got 4"));
  EXPECT_THAT(ParseError(absl::StrCat(ok, "short-token-15c billing schedule\n"), 2),
              HasSubstr("a token must be 16 to 4096 characters long, got 15 (make one with "
                        "`openssl rand -hex 32`)"));
  EXPECT_THAT(ParseError(absl::StrCat(std::string(4097, 'a'), " q consume\n"), 1),
              HasSubstr("got 4097"));
  EXPECT_THAT(ParseError("producer-token-01234\"6789 billing schedule\n", 1),
              HasSubstr("a token may hold only letters, digits and - . _ ~ + / ="));
  EXPECT_THAT(ParseError(absl::StrCat(kProducer, " bill!ing schedule\n"), 1),
              HasSubstr("a queue name must match [A-Za-z0-9._-]{1,200}, got \"bill!ing\""));
  EXPECT_THAT(ParseError(absl::StrCat(kProducer, " billing,,refunds schedule\n"), 1),
              HasSubstr("a queue name must be 1 to 200 characters long, got \"\""));
  EXPECT_THAT(ParseError(absl::StrCat(kProducer, " ", std::string(201, 'q'), " schedule\n"), 1),
              HasSubstr("a queue name must be 1 to 200 characters long"));
  EXPECT_THAT(ParseError(absl::StrCat(kProducer, " billing,* schedule\n"), 1),
              HasSubstr("queues must be either * alone or a list of queue names"));
  EXPECT_THAT(ParseError(absl::StrCat(kProducer, " billing schedule,read\n"), 1),
              HasSubstr("unknown permission \"read\"; permissions are a comma list of schedule, "
                        "consume, admin"));
  EXPECT_THAT(ParseError(absl::StrCat(kProducer, " billing schedule,\n"), 1),
              HasSubstr("unknown permission \"\""));
  EXPECT_THAT(ParseError(absl::StrCat(kProducer, " billing Schedule\n"), 1),
              HasSubstr("unknown permission \"Schedule\""));
}

// A token on two lines is refused (which grant would it have?), naming both lines.
TEST(TokenTableTest, RepeatedTokenIsRefused) {
  EXPECT_THAT(
      ParseError(absl::StrCat(kProducer, " a schedule\n# c\n", kProducer, " b consume\n"), 3),
      HasSubstr("the same token as line 1"));
}

// A file without a single token is refused: it would lock everyone out, and it is what a
// half-written file looks like.
TEST(TokenTableTest, FileWithoutTokensIsRefused) {
  for (const std::string contents : {"", "\n\n", "# nothing yet\n   \n"}) {
    absl::StatusOr<TokenTable> table = TokenTable::Parse(contents, kFile);
    ASSERT_FALSE(table.ok()) << contents;
    EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(table.status().message()),
                ::testing::StartsWith("tokens.txt: no tokens"));
  }
}

// The decision table: unknown token UNAUTHENTICATED; a permission or queue outside the grant
// PERMISSION_DENIED; `*` covers every queue.
TEST(TokenTableTest, AuthorizeDecisions) {
  const TokenTable table = MustParse(ThreeTokens());
  const struct {
    absl::string_view token;
    absl::string_view queue;
    Permission permission;
    absl::StatusCode code;
  } cases[] = {
      {kProducer, "billing", Permission::kSchedule, absl::StatusCode::kOk},
      {kProducer, "refunds", Permission::kSchedule, absl::StatusCode::kOk},
      {kProducer, "billing", Permission::kConsume, absl::StatusCode::kPermissionDenied},
      {kProducer, "billing", Permission::kAdmin, absl::StatusCode::kPermissionDenied},
      {kProducer, "other", Permission::kSchedule, absl::StatusCode::kPermissionDenied},
      {kProducer, "billin", Permission::kSchedule, absl::StatusCode::kPermissionDenied},
      {kWorker, "billing", Permission::kConsume, absl::StatusCode::kOk},
      {kWorker, "refunds", Permission::kConsume, absl::StatusCode::kPermissionDenied},
      {kWorker, "billing", Permission::kSchedule, absl::StatusCode::kPermissionDenied},
      {kOps, "anything", Permission::kAdmin, absl::StatusCode::kOk},
      {kOps, "billing", Permission::kConsume, absl::StatusCode::kOk},
      {kOps, "default", Permission::kSchedule, absl::StatusCode::kOk},
      {"unknown-token-0123456789", "billing", Permission::kSchedule,
       absl::StatusCode::kUnauthenticated},
      {"", "billing", Permission::kSchedule, absl::StatusCode::kUnauthenticated},
  };
  for (const auto& c : cases) {
    const absl::Status status = table.Authorize(c.token, c.queue, c.permission);
    EXPECT_EQ(status.code(), c.code)
        << c.token << " " << c.queue << " " << PermissionName(c.permission) << ": " << status;
    if (!c.token.empty()) {
      EXPECT_THAT(std::string(status.message()), Not(HasSubstr(std::string(c.token))));
    }
  }
  EXPECT_EQ(table.Authorize(kProducer, "other", Permission::kSchedule).message(),
            "the token may not schedule in queue \"other\"");
}

TEST(TokenGrantTest, SeesAQueueWithAnyPermission) {
  const TokenTable table = MustParse(ThreeTokens());
  EXPECT_TRUE(table.Find(kProducer)->Sees("refunds"));
  EXPECT_FALSE(table.Find(kWorker)->Sees("refunds"));
  EXPECT_TRUE(table.Find(kOps)->Sees("whatever"));
}

// A TokenFile over a file in a temporary directory.
class TokenFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir = (std::filesystem::temp_directory_path() / "hourglass_auth_test.XXXXXX");
    ASSERT_NE(::mkdtemp(dir.data()), nullptr) << std::strerror(errno);
    dir_ = dir;
    path_ = dir_ + "/tokens";
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // Replaces the file atomically (write, rename), as an operator or Kubernetes should.
  void Write(const std::string& contents) {
    const std::string temporary = path_ + ".new";
    {
      std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
      out << contents;
    }
    ASSERT_EQ(std::rename(temporary.c_str(), path_.c_str()), 0) << std::strerror(errno);
  }

  static std::string Authorization(absl::string_view token) {
    return absl::StrCat("Bearer ", token);
  }

  std::string dir_;
  std::string path_;
};

TEST_F(TokenFileTest, MissingFileFailsTheStart) {
  absl::StatusOr<std::unique_ptr<TokenFile>> file = TokenFile::Create(path_, absl::ZeroDuration());
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(file.status().message()), HasSubstr(path_));
  EXPECT_THAT(std::string(file.status().message()), HasSubstr("No such file or directory"));
}

// A malformed file stops the start with the path and the line.
TEST_F(TokenFileTest, MalformedFileFailsTheStartNamingPathAndLine) {
  Write(absl::StrCat(kOps, " * admin\n", kProducer, " billing publish\n"));
  absl::StatusOr<std::unique_ptr<TokenFile>> file = TokenFile::Create(path_, absl::ZeroDuration());
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(std::string(file.status().message()),
              ::testing::StartsWith(absl::StrCat(path_, ":2: unknown permission \"publish\"")));
  EXPECT_THAT(std::string(file.status().message()), Not(HasSubstr(std::string(kProducer))));
}

// A change is picked up; a bad new version keeps the old tokens; a removed file too; a fixed
// file is picked up again.
TEST_F(TokenFileTest, ReloadKeepsOldTokensOnABadFile) {
  Write(absl::StrCat(kProducer, " billing schedule\n"));
  absl::StatusOr<std::unique_ptr<TokenFile>> created =
      TokenFile::Create(path_, absl::ZeroDuration());
  ASSERT_TRUE(created.ok()) << created.status();
  TokenFile& file = **created;
  std::shared_ptr<const TokenTable> first = file.Current();
  EXPECT_TRUE(file.ReloadIfChanged().ok());  // unchanged
  EXPECT_EQ(file.Current(), first);

  Write(absl::StrCat(kWorker, " billing consume\n"));
  ASSERT_TRUE(file.ReloadIfChanged().ok());
  EXPECT_EQ(file.Current()->Find(kProducer), nullptr);
  EXPECT_NE(file.Current()->Find(kWorker), nullptr);
  // The version a call holds stays valid across the reload.
  EXPECT_NE(first->Find(kProducer), nullptr);

  std::shared_ptr<const TokenTable> second = file.Current();
  Write(absl::StrCat(kOps, " * admin\n", kProducer, " billing"));  // half-written
  const absl::Status bad = file.ReloadIfChanged();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), ::testing::StartsWith(absl::StrCat(path_, ":2: ")));
  EXPECT_EQ(file.Current(), second);
  EXPECT_TRUE(file.ReloadIfChanged().ok());  // the same bad version is not read again

  ASSERT_EQ(std::remove(path_.c_str()), 0);
  EXPECT_EQ(file.ReloadIfChanged().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(file.Current(), second);

  Write(absl::StrCat(kOps, " * admin\n"));
  ASSERT_TRUE(file.ReloadIfChanged().ok());
  EXPECT_NE(file.Current()->Find(kOps), nullptr);
  EXPECT_EQ(file.Current()->Find(kWorker), nullptr);
}

// The poll thread picks up a change on its own.
TEST_F(TokenFileTest, PollThreadPicksUpAChange) {
  Write(absl::StrCat(kProducer, " billing schedule\n"));
  absl::StatusOr<std::unique_ptr<TokenFile>> created =
      TokenFile::Create(path_, absl::Milliseconds(10));
  ASSERT_TRUE(created.ok()) << created.status();
  Write(absl::StrCat(kWorker, " billing consume\n"));
  // A bounded poll in real time: the thread looks every 10 ms.
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while ((*created)->Current()->Find(kWorker) == nullptr && absl::Now() < give_up) {
    std::this_thread::yield();
  }
  EXPECT_NE((*created)->Current()->Find(kWorker), nullptr);
  EXPECT_EQ((*created)->Current()->Find(kProducer), nullptr);
}

// Authenticate reads exactly one "Bearer <token>" value; the errors never echo the token.
TEST_F(TokenFileTest, AuthenticateReadsTheBearerToken) {
  Write(ThreeTokens());
  absl::StatusOr<std::unique_ptr<TokenFile>> created =
      TokenFile::Create(path_, absl::ZeroDuration());
  ASSERT_TRUE(created.ok()) << created.status();
  const TokenFile* tokens = created->get();

  const std::string producer = Authorization(kProducer);
  absl::StatusOr<Caller> caller = Authenticate(tokens, {producer});
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_TRUE(caller->authenticated());
  EXPECT_TRUE(caller->Check("billing", Permission::kSchedule).ok());
  EXPECT_EQ(caller->Check("billing", Permission::kConsume).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(caller->Sees("refunds"));
  EXPECT_FALSE(caller->Sees("other"));

  const std::string lower = absl::StrCat("bearer ", kWorker);
  EXPECT_TRUE(Authenticate(tokens, {lower}).ok());

  const std::string unknown = "Bearer unknown-token-0123456789";
  const std::string basic = absl::StrCat("Basic ", kProducer);
  const std::string bare(kProducer);
  const std::string empty = "Bearer ";
  const struct {
    std::vector<absl::string_view> values;
    absl::string_view message;
  } refused[] = {
      {{}, "no credentials: send the metadata \"authorization: Bearer <token>\""},
      {{unknown}, "the bearer token is not valid"},
      {{basic}, "the authorization metadata must be \"Bearer <token>\" (the Bearer scheme)"},
      {{bare}, "the authorization metadata must be \"Bearer <token>\" (the Bearer scheme)"},
      {{empty}, "the authorization metadata must be \"Bearer <token>\" (the Bearer scheme)"},
      {{producer, producer}, "more than one authorization metadata value; send one"},
  };
  for (const auto& r : refused) {
    absl::StatusOr<Caller> result = Authenticate(tokens, r.values);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(result.status().message(), r.message);
  }
}

// `*` with admin is needed for CheckEveryQueue (ListTasks without a queue).
TEST_F(TokenFileTest, CheckEveryQueueNeedsTheStar) {
  Write(absl::StrCat(ThreeTokens(), "admin-of-billing-0123 billing admin\n"));
  absl::StatusOr<std::unique_ptr<TokenFile>> created =
      TokenFile::Create(path_, absl::ZeroDuration());
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string ops = Authorization(kOps);
  const std::string billing_admin = "Bearer admin-of-billing-0123";
  EXPECT_TRUE(Authenticate(created->get(), {ops})->CheckEveryQueue(Permission::kAdmin).ok());
  const absl::Status denied =
      Authenticate(created->get(), {billing_admin})->CheckEveryQueue(Permission::kAdmin);
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(denied.message(),
            "the token may not admin in every queue (*); name a queue it may admin in");
}

// Without a tokens file every call is allowed.
TEST(AuthenticateTest, NoTokensFileMeansAnyone) {
  absl::StatusOr<Caller> caller = Authenticate(nullptr, {});
  ASSERT_TRUE(caller.ok());
  EXPECT_FALSE(caller->authenticated());
  EXPECT_TRUE(caller->Check("any", Permission::kAdmin).ok());
  EXPECT_TRUE(caller->CheckEveryQueue(Permission::kAdmin).ok());
  EXPECT_TRUE(caller->Sees("any"));
}

}  // namespace
}  // namespace hourglass
