// AddressPolicy: which network addresses push deliveries may connect to (the SSRF guard).
//
//   absl::StatusOr<AddressPolicy> policy = AddressPolicy::Create("10.1.0.0/16,127.0.0.1/32");
//   std::optional<std::string> why = policy->Refusal(address);  // nullopt: allowed
//
// By default every public unicast address is allowed and these are refused: "this network"
// (0.0.0.0/8, ::/128), loopback (127.0.0.0/8, ::1), private (10/8, 172.16/12, 192.168/16),
// shared/CGNAT (100.64/10, where clusters often put pods), link-local (169.254/16, which holds the
// cloud metadata service 169.254.169.254, and fe80::/10), unique-local (fc00::/7), multicast,
// broadcast and reserved (224/4, 240/4, ff00::/8), IPv4-compatible (::/96) and NAT64 (64:ff9b::/96)
// IPv6. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are
// judged as the IPv4 address they carry. The allowlist (CIDRs) admits addresses that would
// otherwise be refused.
//
// Immutable after Create(); thread-safe.
#ifndef HOURGLASS_WORKERS_ADDRESS_POLICY_H_
#define HOURGLASS_WORKERS_ADDRESS_POLICY_H_

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hourglass {

// An IPv4 or IPv6 address; IPv4 is held as IPv4-mapped IPv6.
struct IpAddress {
  std::array<uint8_t, 16> bytes{};

  // Parses a literal ("10.0.0.1", "::1", "[::1]"); nullopt when it is not one.
  static std::optional<IpAddress> Parse(absl::string_view text);
  // From a socket address (AF_INET or AF_INET6); nullopt for other families.
  static std::optional<IpAddress> FromSockaddr(const sockaddr* address);
  bool is_v4() const;
  std::string ToString() const;
};

class AddressPolicy {
 public:
  // `allowlist`: comma-separated CIDRs ("10.0.0.0/8,::1/128"); a bare address is a /32 or /128.
  // InvalidArgument naming the bad entry.
  static absl::StatusOr<AddressPolicy> Create(absl::string_view allowlist);

  // Why `address` may not be connected to ("169.254.169.254 is link-local (cloud metadata)..."),
  // or nullopt when it may.
  std::optional<std::string> Refusal(const IpAddress& address) const;

  // For a host name or address literal given by a client: whether it can be judged before
  // resolving it (an IP literal, or "localhost" and *.localhost, which always mean loopback), and
  // the refusal when it is refused.
  std::optional<std::string> RefusalOfLiteralHost(absl::string_view host) const;

 private:
  struct Cidr {
    IpAddress base;
    int prefix_bits = 0;  // of the 128-bit (mapped) form
    bool Contains(const IpAddress& address) const;
  };
  static std::optional<Cidr> ParseCidr(absl::string_view text);

  std::vector<Cidr> allowed_;
};

}  // namespace hourglass

#endif  // HOURGLASS_WORKERS_ADDRESS_POLICY_H_
