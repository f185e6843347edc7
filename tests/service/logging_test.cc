// Tests of service/logging.h: every line is one JSON object (checked with protobuf's JSON parser,
// which decodes the escapes back), strings are escaped, the level filter drops lines, and lines of
// concurrent threads never interleave. stderr is captured with gtest's CaptureStderr (a dup2 of
// fd 2), which sees the single write(2) of each line.
#include "service/logging.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace hourglass {
namespace {

using ::testing::MatchesRegex;

// Parses one line as a JSON object; fails the test when it is not one.
google::protobuf::Struct ParseJsonObject(const std::string& line) {
  google::protobuf::Struct object;
  const auto status = google::protobuf::util::JsonStringToMessage(line, &object);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\nline: " << line;
  return object;
}

// The lines written to stderr, without their '\n'; fails the test unless the output ends with one.
std::vector<std::string> Lines(const std::string& output) {
  if (output.empty()) return {};
  EXPECT_EQ(output.back(), '\n') << output;
  std::vector<std::string> lines = absl::StrSplit(output, '\n');
  lines.pop_back();  // after the last '\n'
  return lines;
}

class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override { SetLogLevel(LogLevel::kInfo); }
  void TearDown() override { SetLogLevel(LogLevel::kInfo); }
};

// A line carries ts (UTC, milliseconds), level and event first, then the fields in call order.
TEST_F(LoggingTest, WritesOneJsonObjectPerLine) {
  ::testing::internal::CaptureStderr();
  LogInfo("server_started")
      .Str("grpc_address", "0.0.0.0:7070")
      .Int("workers", 4)
      .Int("negative", -9223372036854775807 - 1)
      .Bool("ready", true)
      .Bool("draining", false)
      .Dbl("ratio", 0.25)
      .Dur("retention_seconds", absl::Milliseconds(1500));
  const std::vector<std::string> lines = Lines(::testing::internal::GetCapturedStderr());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], MatchesRegex("\\{\"ts\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
                                     "[0-9]{2}\\.[0-9]{3}Z\",.*"));
  const std::string rest = lines[0].substr(lines[0].find("\"level\""));
  EXPECT_EQ(rest,
            "\"level\":\"info\",\"event\":\"server_started\",\"grpc_address\":\"0.0.0.0:7070\","
            "\"workers\":4,\"negative\":-9223372036854775808,\"ready\":true,\"draining\":false,"
            "\"ratio\":0.25,\"retention_seconds\":1.5}");
  const google::protobuf::Struct object = ParseJsonObject(lines[0]);
  EXPECT_EQ(object.fields().at("event").string_value(), "server_started");
  EXPECT_EQ(object.fields().at("workers").number_value(), 4);
  EXPECT_TRUE(object.fields().at("ready").bool_value());
}

// The timestamp is the current UTC time.
TEST_F(LoggingTest, TimestampIsNowInUtc) {
  const absl::Time before = absl::FromUnixMillis(absl::ToUnixMillis(absl::Now()));
  ::testing::internal::CaptureStderr();
  LogInfo("tick");
  const std::vector<std::string> lines = Lines(::testing::internal::GetCapturedStderr());
  const absl::Time after = absl::Now();
  ASSERT_EQ(lines.size(), 1u);
  const google::protobuf::Struct object = ParseJsonObject(lines[0]);
  absl::Time ts;
  std::string error;
  ASSERT_TRUE(absl::ParseTime("%Y-%m-%dT%H:%M:%E3SZ", object.fields().at("ts").string_value(),
                              absl::UTCTimeZone(), &ts, &error))
      << error;
  EXPECT_GE(ts, before);
  EXPECT_LE(ts, after);
}

// Quotes, backslashes, newlines and every control byte are escaped; the line stays one line and
// decodes back to the original text. UTF-8 passes through.
TEST_F(LoggingTest, EscapesStrings) {
  std::string nasty = "quote\" backslash\\ newline\n return\r tab\t del\x7f utf8 \xc3\xa9 nul";
  nasty.push_back('\0');
  for (int c = 1; c < 0x20; ++c) nasty.push_back(static_cast<char>(c));
  ::testing::internal::CaptureStderr();
  LogWarning("odd\"event\n").Str("message", nasty).Str("key\"with\nnewline", "v");
  const std::string output = ::testing::internal::GetCapturedStderr();
  const std::vector<std::string> lines = Lines(output);
  ASSERT_EQ(lines.size(), 1u) << output;
  const google::protobuf::Struct object = ParseJsonObject(lines[0]);
  EXPECT_EQ(object.fields().at("level").string_value(), "warning");
  EXPECT_EQ(object.fields().at("event").string_value(), "odd\"event\n");
  EXPECT_EQ(object.fields().at("message").string_value(), nasty);
  EXPECT_EQ(object.fields().at("key\"with\nnewline").string_value(), "v");
  for (char c : lines[0]) {
    EXPECT_GE(static_cast<unsigned char>(c), 0x20) << "raw control byte in " << lines[0];
  }
}

// JsonQuote's exact escapes.
TEST_F(LoggingTest, JsonQuoteEscapes) {
  EXPECT_EQ(JsonQuote(""), "\"\"");
  EXPECT_EQ(JsonQuote("plain"), "\"plain\"");
  EXPECT_EQ(JsonQuote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(JsonQuote("\n\r\t"), "\"\\n\\r\\t\"");
  EXPECT_EQ(JsonQuote(absl::string_view("\0\x01\x1f\x7f", 4)), "\"\\u0000\\u0001\\u001f\\u007f\"");
  EXPECT_EQ(JsonQuote("\xe2\x82\xac"), "\"\xe2\x82\xac\"");
}

// Numbers a line carries are valid JSON numbers even when they are not finite (a Dur of an
// infinite duration, e.g. --shutdown_grace=inf, must not break the line).
TEST_F(LoggingTest, NonFiniteNumbersStayValidJson) {
  ::testing::internal::CaptureStderr();
  LogInfo("odd_numbers")
      .Dbl("nan", std::nan(""))
      .Dbl("inf", std::numeric_limits<double>::infinity())
      .Dur("forever", absl::InfiniteDuration());
  const std::vector<std::string> lines = Lines(::testing::internal::GetCapturedStderr());
  ASSERT_EQ(lines.size(), 1u);
  ParseJsonObject(lines[0]);
}

// Lines below the level are dropped; at and above it they are written.
TEST_F(LoggingTest, RespectsLogLevel) {
  EXPECT_FALSE(LogEnabled(LogLevel::kDebug));  // the default is info
  EXPECT_TRUE(LogEnabled(LogLevel::kInfo));

  ::testing::internal::CaptureStderr();
  LogDebug("d0");
  LogInfo("i0");
  SetLogLevel(LogLevel::kWarning);
  LogDebug("d1");
  LogInfo("i1");
  LogWarning("w1");
  LogError("e1");
  SetLogLevel(LogLevel::kError);
  LogWarning("w2");
  LogError("e2");
  SetLogLevel(LogLevel::kDebug);
  LogDebug("d3").Str("k", "v");
  const std::vector<std::string> lines = Lines(::testing::internal::GetCapturedStderr());

  std::vector<std::string> events;
  std::vector<std::string> levels;
  for (const std::string& line : lines) {
    const google::protobuf::Struct object = ParseJsonObject(line);
    events.push_back(object.fields().at("event").string_value());
    levels.push_back(object.fields().at("level").string_value());
  }
  EXPECT_EQ(events, (std::vector<std::string>{"i0", "w1", "e1", "e2", "d3"}));
  EXPECT_EQ(levels, (std::vector<std::string>{"info", "warning", "error", "error", "debug"}));

  SetLogLevel(LogLevel::kError);
  EXPECT_FALSE(LogEnabled(LogLevel::kWarning));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
}

// ParseLogLevel takes the four names (and "warn"), in any case; anything else leaves `level`.
TEST_F(LoggingTest, ParseLogLevel) {
  LogLevel level = LogLevel::kError;
  ASSERT_TRUE(ParseLogLevel("debug", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  ASSERT_TRUE(ParseLogLevel("info", &level));
  EXPECT_EQ(level, LogLevel::kInfo);
  ASSERT_TRUE(ParseLogLevel("warning", &level));
  EXPECT_EQ(level, LogLevel::kWarning);
  ASSERT_TRUE(ParseLogLevel("error", &level));
  EXPECT_EQ(level, LogLevel::kError);
  ASSERT_TRUE(ParseLogLevel("warn", &level));
  EXPECT_EQ(level, LogLevel::kWarning);
  ASSERT_TRUE(ParseLogLevel("DEBUG", &level));
  EXPECT_EQ(level, LogLevel::kDebug);

  for (const char* bad : {"", "verbose", "trace", "infoo", " info", "fatal"}) {
    level = LogLevel::kInfo;
    EXPECT_FALSE(ParseLogLevel(bad, &level)) << bad;
    EXPECT_EQ(level, LogLevel::kInfo) << bad;
  }
}

// Lines written by many threads at once come out whole, one per line.
TEST_F(LoggingTest, ConcurrentLinesNeverInterleave) {
  constexpr int kThreads = 8;
  constexpr int kLinesPerThread = 200;
  const std::string filler(300, 'x');
  ::testing::internal::CaptureStderr();
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([t, &filler] {
        for (int i = 0; i < kLinesPerThread; ++i) {
          LogInfo("concurrent").Int("thread", t).Int("i", i).Str("filler", filler);
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
  }
  const std::vector<std::string> lines = Lines(::testing::internal::GetCapturedStderr());
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kLinesPerThread));
  std::vector<int> next(kThreads, 0);
  for (const std::string& line : lines) {
    const google::protobuf::Struct object = ParseJsonObject(line);
    const int t = static_cast<int>(object.fields().at("thread").number_value());
    ASSERT_GE(t, 0);
    ASSERT_LT(t, kThreads);
    // Each thread's own lines keep their order.
    EXPECT_EQ(object.fields().at("i").number_value(), next[t]++);
    EXPECT_EQ(object.fields().at("filler").string_value(), filler);
  }
}

}  // namespace
}  // namespace hourglass
