#include "api/server_admission_sources.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>

#include "transport/sockets.hpp"

namespace bokbok::rpc {

namespace {

bool loopback6(const in6_addr& a) {
  if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
  // ::ffff:127.x.y.z
  return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
}

}  // namespace

std::string source_limits::source_of(int fd) const {
  if (limits_.at_once == 0 && limits_.per_second == 0) return "";
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(ss).sin_addr;
    if (!limits_.limit_local && (ntohl(a.s_addr) >> 24) == 127) return "";
    ::inet_ntop(AF_INET, &a, text, sizeof text);
    return text;
  }
  if (ss.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr;
    if (!limits_.limit_local && loopback6(a)) return "";
    ::inet_ntop(AF_INET6, &a, text, sizeof text);
    return text;
  }
  if (ss.ss_family == AF_UNIX) {
    if (!limits_.limit_local) return "";
    auto creds = transport::peer_credentials_of(fd);
    return creds ? "uid " + std::to_string(creds->uid) : "a local peer";
  }
  return "";
}

void source_limits::refill(entry& e, clock::time_point now) const {
  const double rate = limits_.per_second;
  if (e.refilled == clock::time_point{}) {
    e.tokens = rate;
  } else {
    std::chrono::duration<double> dt = now - e.refilled;
    e.tokens = std::min(rate, e.tokens + dt.count() * rate);
  }
  e.refilled = now;
}

void source_limits::forget_idle(clock::time_point now) {
  for (auto it = sources_.begin(); it != sources_.end();) {
    refill(it->second, now);
    if (it->second.open == 0 && it->second.tokens >= limits_.per_second)
      it = sources_.erase(it);
    else
      ++it;
  }
}

std::string source_limits::admit(const std::string& source, clock::time_point now) {
  if (source.empty()) return "";
  std::lock_guard lock(mutex_);
  auto it = sources_.find(source);
  if (it == sources_.end()) {
    if (sources_.size() >= max_sources) forget_idle(now);
    if (sources_.size() >= max_sources) return "";  // see the header
    it = sources_.emplace(source, entry{}).first;
  }
  entry& e = it->second;
  if (limits_.at_once && e.open >= limits_.at_once)
    return "too many connections from " + source + ": " + std::to_string(e.open) +
           " at once (at most " + std::to_string(limits_.at_once) + ")";
  if (limits_.per_second) {
    refill(e, now);
    if (e.tokens < 1)
      return "too many new connections from " + source + " (at most " +
             std::to_string(limits_.per_second) + " a second)";
    e.tokens -= 1;
  }
  return "";
}

void source_limits::started(const std::string& source) {
  if (source.empty()) return;
  std::lock_guard lock(mutex_);
  ++sources_[source].open;
}

void source_limits::ended(const std::string& source) {
  if (source.empty()) return;
  std::lock_guard lock(mutex_);
  auto it = sources_.find(source);
  if (it == sources_.end() || it->second.open == 0) return;
  --it->second.open;
}

std::size_t source_limits::tracked() const {
  std::lock_guard lock(mutex_);
  return sources_.size();
}

}  // namespace bokbok::rpc
