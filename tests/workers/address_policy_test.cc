// Tests of AddressPolicy, the SSRF guard of push delivery: every refused range, IPv4-mapped IPv6,
// the allowlist, literal hosts, and bad allowlist entries.
#include "workers/address_policy.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "absl/strings/match.h"

namespace hourglass {
namespace {

std::optional<std::string> RefusalOf(const AddressPolicy& policy, const std::string& text) {
  std::optional<IpAddress> address = IpAddress::Parse(text);
  EXPECT_TRUE(address.has_value()) << text;
  return address.has_value() ? policy.Refusal(*address) : std::nullopt;
}

// By default, the ranges a cluster keeps for itself are refused (with the kind named) and public
// addresses are allowed.
TEST(AddressPolicyTest, RefusesInternalRangesByDefault) {
  absl::StatusOr<AddressPolicy> policy = AddressPolicy::Create("");
  ASSERT_TRUE(policy.ok());
  const std::pair<const char*, const char*> refused[] = {
      {"169.254.169.254", "cloud metadata"},
      {"169.254.1.1", "link-local"},
      {"127.0.0.1", "loopback"},
      {"127.255.255.254", "loopback"},
      {"10.0.0.1", "private"},
      {"10.255.255.255", "private"},
      {"172.16.0.1", "private"},
      {"172.31.255.255", "private"},
      {"192.168.1.1", "private"},
      {"100.64.0.1", "shared"},
      {"0.0.0.0", "this network"},
      {"224.0.0.1", "multicast"},
      {"255.255.255.255", "broadcast"},
      {"::1", "loopback"},
      {"::", "unspecified"},
      {"fd00::1", "unique-local"},
      {"fc00::1", "unique-local"},
      {"fe80::1", "link-local"},
      {"ff02::1", "multicast"},
      {"::ffff:127.0.0.1", "loopback"},
      {"::ffff:169.254.169.254", "cloud metadata"},
      {"64:ff9b::a00:1", "NAT64"},
      {"::127.0.0.1", "IPv4-compatible"},
  };
  for (const auto& [address, kind] : refused) {
    std::optional<std::string> why = RefusalOf(*policy, address);
    ASSERT_TRUE(why.has_value()) << address << " was allowed";
    EXPECT_TRUE(absl::StrContains(*why, kind)) << address << ": " << *why;
    EXPECT_TRUE(absl::StrContains(*why, "--push_allowlist")) << *why;
  }
  for (const char* address :
       {"8.8.8.8", "1.1.1.1", "172.15.255.255", "172.32.0.1", "100.63.255.255", "100.128.0.1",
        "169.253.255.255", "11.0.0.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"}) {
    EXPECT_EQ(RefusalOf(*policy, address), std::nullopt) << address;
  }
}

// The allowlist admits exactly its ranges, IPv4 and IPv6, bare addresses as single hosts.
TEST(AddressPolicyTest, AllowlistAdmitsExactlyItsRanges) {
  absl::StatusOr<AddressPolicy> policy =
      AddressPolicy::Create(" 10.1.0.0/16, 127.0.0.1 ,fd00:1::/32");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(RefusalOf(*policy, "10.1.2.3"), std::nullopt);
  EXPECT_EQ(RefusalOf(*policy, "10.1.255.255"), std::nullopt);
  EXPECT_NE(RefusalOf(*policy, "10.2.0.1"), std::nullopt);
  EXPECT_EQ(RefusalOf(*policy, "127.0.0.1"), std::nullopt);
  EXPECT_EQ(RefusalOf(*policy, "::ffff:127.0.0.1"), std::nullopt);
  EXPECT_NE(RefusalOf(*policy, "127.0.0.2"), std::nullopt);
  EXPECT_EQ(RefusalOf(*policy, "fd00:1:ffff::1"), std::nullopt);
  EXPECT_NE(RefusalOf(*policy, "fd00:2::1"), std::nullopt);
  EXPECT_NE(RefusalOf(*policy, "169.254.169.254"), std::nullopt);

  absl::StatusOr<AddressPolicy> everything = AddressPolicy::Create("0.0.0.0/0,::/0");
  ASSERT_TRUE(everything.ok());
  EXPECT_EQ(RefusalOf(*everything, "169.254.169.254"), std::nullopt);
  EXPECT_EQ(RefusalOf(*everything, "::1"), std::nullopt);
}

// A bad allowlist entry is an error naming it.
TEST(AddressPolicyTest, BadAllowlistEntriesAreNamed) {
  for (const char* bad : {"10.0.0.0/33", "10.0.0/8", "example.com", "::1/129", "10.0.0.0/",
                          "10.0.0.0/-1", "10.0.0.0/8x"}) {
    absl::StatusOr<AddressPolicy> policy = AddressPolicy::Create(bad);
    ASSERT_FALSE(policy.ok()) << bad;
    EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(policy.status().message(), bad)) << policy.status();
  }
}

// Literal hosts are judged at once; localhost always means loopback; other names wait for DNS.
TEST(AddressPolicyTest, LiteralHostsAndLocalhostAreJudgedWithoutDns) {
  absl::StatusOr<AddressPolicy> policy = AddressPolicy::Create("");
  ASSERT_TRUE(policy.ok());
  EXPECT_NE(policy->RefusalOfLiteralHost("169.254.169.254"), std::nullopt);
  EXPECT_NE(policy->RefusalOfLiteralHost("[::1]"), std::nullopt);
  EXPECT_NE(policy->RefusalOfLiteralHost("::1"), std::nullopt);
  EXPECT_NE(policy->RefusalOfLiteralHost("localhost"), std::nullopt);
  EXPECT_NE(policy->RefusalOfLiteralHost("LocalHost."), std::nullopt);
  EXPECT_NE(policy->RefusalOfLiteralHost("api.localhost"), std::nullopt);
  EXPECT_EQ(policy->RefusalOfLiteralHost("example.com"), std::nullopt);
  EXPECT_EQ(policy->RefusalOfLiteralHost("8.8.8.8"), std::nullopt);
  absl::StatusOr<AddressPolicy> loopback = AddressPolicy::Create("127.0.0.0/8");
  ASSERT_TRUE(loopback.ok());
  EXPECT_EQ(loopback->RefusalOfLiteralHost("localhost"), std::nullopt);
}

// Parsing and printing of addresses, including from socket addresses.
TEST(IpAddressTest, ParsesAndPrintsBothFamilies) {
  EXPECT_EQ(IpAddress::Parse("10.1.2.3")->ToString(), "10.1.2.3");
  EXPECT_TRUE(IpAddress::Parse("10.1.2.3")->is_v4());
  EXPECT_EQ(IpAddress::Parse("[2001:db8::1]")->ToString(), "2001:db8::1");
  EXPECT_FALSE(IpAddress::Parse("2001:db8::1")->is_v4());
  EXPECT_EQ(IpAddress::Parse("::ffff:10.0.0.1")->ToString(), "10.0.0.1");
  EXPECT_EQ(IpAddress::Parse("example.com"), std::nullopt);
  EXPECT_EQ(IpAddress::Parse("[10.0.0.1"), std::nullopt);
  EXPECT_EQ(IpAddress::Parse("1.2.3.4.5"), std::nullopt);
}

}  // namespace
}  // namespace hourglass
