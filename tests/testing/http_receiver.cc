#include "tests/testing/http_receiver.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace hourglass::testing {

std::string HttpReceiver::Request::Header(const std::string& name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, name)) return value;
  }
  return "";
}

HttpReceiver::HttpReceiver() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
      ::listen(listen_fd_, 64) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    std::perror("HttpReceiver: cannot listen on 127.0.0.1");
    std::abort();
  }
  port_ = ntohs(address.sin_port);
  acceptor_ = std::thread([this] { Accept(); });
}

HttpReceiver::~HttpReceiver() { Stop(); }

std::string HttpReceiver::Url(const std::string& path) const {
  return absl::StrCat("http://127.0.0.1:", port_, path);
}

void HttpReceiver::Script(Response response) {
  absl::MutexLock lock(&mu_);
  script_.push_back(std::move(response));
}

bool HttpReceiver::AwaitRequests(size_t n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto arrived = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return requests_.size() >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&arrived), timeout);
}

std::vector<HttpReceiver::Request> HttpReceiver::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

void HttpReceiver::Stop() {
  if (stopping_.exchange(true)) return;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  std::vector<std::thread> servers;
  std::vector<int> fds;
  {
    absl::MutexLock lock(&mu_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    servers.swap(servers_);
    fds.swap(open_fds_);
  }
  for (std::thread& server : servers) server.join();
  // Closed only now, so that no fd number is reused while Stop() may still shut it down.
  for (int fd : fds) ::close(fd);
}

void HttpReceiver::Accept() {
  while (!stopping_.load()) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_.load()) return;
      continue;
    }
    ++connections_;
    absl::MutexLock lock(&mu_);
    open_fds_.push_back(fd);
    servers_.emplace_back([this, fd] { Serve(fd); });
  }
}

void HttpReceiver::Serve(int fd) {
  std::string buffer;
  char chunk[4096];
  const auto read_more = [&]() {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
    return true;
  };
  while (!stopping_.load()) {
    size_t header_end;
    while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
      if (!read_more()) return;
    }
    Request request;
    std::vector<std::string> lines =
        absl::StrSplit(buffer.substr(0, header_end), "\r\n", absl::SkipEmpty());
    buffer.erase(0, header_end + 4);
    if (lines.empty()) return;
    std::vector<std::string> start = absl::StrSplit(lines[0], ' ');
    request.method = start.size() > 0 ? start[0] : "";
    request.target = start.size() > 1 ? start[1] : "";
    size_t content_length = 0;
    for (size_t i = 1; i < lines.size(); ++i) {
      std::pair<std::string, std::string> header =
          absl::StrSplit(lines[i], absl::MaxSplits(':', 1));
      header.second = std::string(absl::StripAsciiWhitespace(header.second));
      if (absl::EqualsIgnoreCase(header.first, "content-length")) {
        (void)absl::SimpleAtoi(header.second, &content_length);
      }
      request.headers.push_back(std::move(header));
    }
    while (buffer.size() < content_length) {
      if (!read_more()) return;
    }
    request.body = buffer.substr(0, content_length);
    buffer.erase(0, content_length);
    Response response;
    {
      absl::MutexLock lock(&mu_);
      requests_.push_back(std::move(request));
      if (!script_.empty()) {
        response = std::move(script_.front());
        script_.pop_front();
      }
    }
    if (response.delay > absl::ZeroDuration()) {
      // Wait for the delay, or until the peer goes away or Stop() shuts the socket down.
      const absl::Time until = absl::Now() + response.delay;
      while (!stopping_.load() && absl::Now() < until) {
        pollfd p = {fd, POLLIN | POLLRDHUP, 0};
        if (::poll(&p, 1, 20) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) return;
      }
      if (stopping_.load()) return;
    }
    std::string reply = absl::StrCat("HTTP/1.1 ", response.status, " Scripted\r\n");
    for (const auto& [key, value] : response.headers)
      absl::StrAppend(&reply, key, ": ", value, "\r\n");
    absl::StrAppend(&reply, "Content-Length: ", response.body.size(), "\r\n\r\n", response.body);
    if (::write(fd, reply.data(), reply.size()) != static_cast<ssize_t>(reply.size())) return;
  }
}

}  // namespace hourglass::testing
