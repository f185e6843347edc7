#include "workers/address_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace hourglass {

namespace {

constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

struct DeniedRange {
  const char* cidr;
  const char* kind;
};

// The refused ranges, most specific first (the first match names the reason).
constexpr DeniedRange kDenied[] = {
    {"169.254.169.254/32", "the cloud metadata address"},
    {"0.0.0.0/8", "a \"this network\" address"},
    {"10.0.0.0/8", "a private address"},
    {"100.64.0.0/10", "a shared (carrier-grade NAT) address"},
    {"127.0.0.0/8", "a loopback address"},
    {"169.254.0.0/16", "a link-local address"},
    {"172.16.0.0/12", "a private address"},
    {"192.0.0.0/24", "an IETF protocol assignment address"},
    {"192.168.0.0/16", "a private address"},
    {"198.18.0.0/15", "a benchmarking address"},
    {"224.0.0.0/4", "a multicast address"},
    {"240.0.0.0/4", "a reserved or broadcast address"},
    {"::/128", "the unspecified address"},
    {"::1/128", "a loopback address"},
    {"::/96", "an IPv4-compatible (deprecated) address"},
    {"64:ff9b::/96", "a NAT64 address"},
    {"fc00::/7", "a unique-local address"},
    {"fe80::/10", "a link-local address"},
    {"ff00::/8", "a multicast address"},
};

}  // namespace

std::optional<IpAddress> IpAddress::Parse(absl::string_view text) {
  if (absl::ConsumePrefix(&text, "[") && !absl::ConsumeSuffix(&text, "]")) return std::nullopt;
  const std::string s(text);
  IpAddress address;
  in_addr v4;
  if (::inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    std::memcpy(address.bytes.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size());
    std::memcpy(address.bytes.data() + 12, &v4, 4);
    return address;
  }
  in6_addr v6;
  if (::inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(address.bytes.data(), &v6, 16);
    return address;
  }
  return std::nullopt;
}

std::optional<IpAddress> IpAddress::FromSockaddr(const sockaddr* sa) {
  IpAddress address;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    std::memcpy(address.bytes.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size());
    std::memcpy(address.bytes.data() + 12, &in->sin_addr, 4);
    return address;
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    std::memcpy(address.bytes.data(), &in6->sin6_addr, 16);
    return address;
  }
  return std::nullopt;
}

bool IpAddress::is_v4() const {
  return std::memcmp(bytes.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size()) == 0;
}

std::string IpAddress::ToString() const {
  char buffer[INET6_ADDRSTRLEN] = {};
  if (is_v4()) {
    ::inet_ntop(AF_INET, bytes.data() + 12, buffer, sizeof(buffer));
  } else {
    ::inet_ntop(AF_INET6, bytes.data(), buffer, sizeof(buffer));
  }
  return buffer;
}

bool AddressPolicy::Cidr::Contains(const IpAddress& address) const {
  int bits = prefix_bits;
  for (int i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
    const uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((address.bytes[i] & mask) != (base.bytes[i] & mask)) return false;
  }
  return true;
}

std::optional<AddressPolicy::Cidr> AddressPolicy::ParseCidr(absl::string_view text) {
  std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(text, '/');
  std::optional<IpAddress> base = IpAddress::Parse(parts.first);
  if (!base.has_value()) return std::nullopt;
  const int max_bits = base->is_v4() ? 32 : 128;
  int bits = max_bits;
  if (!parts.second.empty() &&
      (!absl::SimpleAtoi(parts.second, &bits) || bits < 0 || bits > max_bits)) {
    return std::nullopt;
  }
  if (absl::StrContains(text, '/') && parts.second.empty()) return std::nullopt;
  return Cidr{*base, base->is_v4() ? bits + 96 : bits};
}

absl::StatusOr<AddressPolicy> AddressPolicy::Create(absl::string_view allowlist) {
  AddressPolicy policy;
  for (absl::string_view entry : absl::StrSplit(allowlist, ',', absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    std::optional<Cidr> cidr = ParseCidr(entry);
    if (!cidr.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--push_allowlist entry \"", entry,
          "\" is not a CIDR; write addresses or ranges such as 10.1.0.0/16 or fd00::/8"));
    }
    policy.allowed_.push_back(*cidr);
  }
  return policy;
}

std::optional<std::string> AddressPolicy::Refusal(const IpAddress& address) const {
  for (const Cidr& allowed : allowed_) {
    if (allowed.Contains(address)) return std::nullopt;
  }
  for (const DeniedRange& range : kDenied) {
    // The table is constant and valid (checked by the tests).
    const std::optional<Cidr> cidr = ParseCidr(range.cidr);
    if (cidr.has_value() && cidr->Contains(address)) {
      return absl::StrCat(address.ToString(), " is ", range.kind,
                          "; push targets must be public addresses unless the server's "
                          "--push_allowlist admits them");
    }
  }
  return std::nullopt;
}

std::optional<std::string> AddressPolicy::RefusalOfLiteralHost(absl::string_view host) const {
  if (std::optional<IpAddress> literal = IpAddress::Parse(host); literal.has_value()) {
    return Refusal(*literal);
  }
  const std::string lower = absl::AsciiStrToLower(absl::StripSuffix(host, "."));
  if (lower == "localhost" || absl::EndsWith(lower, ".localhost")) {
    // RFC 6761: always loopback. Judged as 127.0.0.1 (and ::1, when 127/8 is allowed).
    std::optional<std::string> v4 = Refusal(*IpAddress::Parse("127.0.0.1"));
    if (!v4.has_value()) return std::nullopt;
    return absl::StrCat(host, " means ", *v4);
  }
  return std::nullopt;
}

}  // namespace hourglass
