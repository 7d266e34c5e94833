#include "api/server_admission.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "base/is_socket.hpp"
#include "bokbok/error.hpp"
#include "io/write_now.hpp"
#include "transport/superserver.hpp"
#include "wire/frame.hpp"
#include "wire/preamble.hpp"

namespace bokbok::rpc {

namespace {
constexpr auto linger_time = std::chrono::seconds(2);
}

admission::admission(std::chrono::milliseconds wait, unsigned long long watchdog_usec)
    : wait_(wait) {
  if (watchdog_usec > 0) {
    // systemd advises pinging at half the interval.
    watchdog_every_ = std::chrono::microseconds(watchdog_usec / 2);
    next_watchdog_ = clock::now();
  }
}

void admission::wait_for_slot(transport::connected_socket s) {
  waiting_.push_back({std::move(s), clock::now() + wait_});
}

transport::connected_socket admission::pop_waiting() {
  auto s = std::move(waiting_.front().sock);
  waiting_.pop_front();
  return s;
}

std::vector<transport::connected_socket> admission::take_expired() {
  std::vector<transport::connected_socket> out;
  auto now = clock::now();
  while (!waiting_.empty() && waiting_.front().deadline <= now) out.push_back(pop_waiting());
  return out;
}

std::vector<transport::connected_socket> admission::take_all_waiting() {
  std::vector<transport::connected_socket> out;
  while (!waiting_.empty()) out.push_back(pop_waiting());
  return out;
}

std::string admission::refuse(transport::connected_socket s, error_code code,
                              const std::string& text) {
  std::string bytes = wire::encode_preamble({});
  wire::append_frame(bytes, wire::frame_type::goaway, 0, 0,
                     wire::encode_code_payload(std::uint16_t(code), text));
  wire::append_frame(bytes, wire::frame_type::close, 0, 0, {});
  int fd = s.fd.get();
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  // A fresh socket's send buffer takes these few bytes whole; if not, the client is
  // refused all the same, only less politely.
  (void)io::write_now(fd, base::is_socket(fd), bytes);
  ::shutdown(fd, SHUT_WR);
  lingering_.push_back({std::move(s.fd), clock::now() + linger_time});
  return std::string("refused: ") + to_string(code) + ": " + text;
}

void admission::add_lingering_fds(std::vector<pollfd>& fds) const {
  for (auto& l : lingering_) fds.push_back({l.fd.get(), POLLIN, 0});
}

void admission::service_lingering(const std::vector<pollfd>& fds, std::size_t first) {
  auto now = clock::now();
  for (std::size_t i = 0; i < lingering_.size(); ++i) {
    auto& l = lingering_[i];
    bool done = l.deadline <= now;
    if (first + i < fds.size() && fds[first + i].revents) {
      char sink[4096];
      ssize_t n = ::read(l.fd.get(), sink, sizeof sink);
      if (n <= 0 && !(n < 0 && errno == EAGAIN)) done = true;  // hung up or failed
    }
    if (done) l.fd.reset();
  }
  std::erase_if(lingering_, [](const lingering& l) { return !l.fd; });
}

int admission::poll_timeout_ms() const {
  auto now = clock::now();
  std::optional<clock::time_point> next;
  auto consider = [&](clock::time_point t) { next = next ? std::min(*next, t) : t; };
  if (!waiting_.empty()) consider(waiting_.front().deadline);
  for (auto& l : lingering_) consider(l.deadline);
  if (watchdog_every_.count() > 0) consider(next_watchdog_);
  if (!next) return -1;
  if (*next <= now) return 0;
  return static_cast<int>(
      std::chrono::ceil<std::chrono::milliseconds>(*next - now).count());
}

void admission::maybe_ping_watchdog() {
  if (watchdog_every_.count() == 0 || clock::now() < next_watchdog_) return;
  transport::sd_notify("WATCHDOG=1");
  next_watchdog_ = clock::now() + watchdog_every_;
}

}  // namespace bokbok::rpc
