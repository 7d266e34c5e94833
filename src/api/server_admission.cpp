#include "api/server_admission.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

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

admission::admission(std::shared_ptr<io::loop> loop, std::chrono::milliseconds wait,
                     std::function<void(transport::connected_socket)> expired)
    : loop_(std::move(loop)), wait_(wait), expired_(std::move(expired)) {}

void admission::wait_for_slot(transport::connected_socket s) {
  waiting_.push_back({std::move(s), clock::now() + wait_});
  arm_expiry_timer();
}

transport::connected_socket admission::pop_waiting() {
  auto s = std::move(waiting_.front().sock);
  waiting_.pop_front();
  return s;
}

std::vector<transport::connected_socket> admission::take_all_waiting() {
  std::vector<transport::connected_socket> out;
  while (!waiting_.empty()) out.push_back(pop_waiting());
  return out;
}

// One timer, due when the oldest waiting client's wait runs out; a client admitted
// before then leaves the timer to find the next one.
void admission::arm_expiry_timer() {
  if (expiry_timer_ || waiting_.empty()) return;
  expiry_timer_ = loop_->add_timer(waiting_.front().deadline, [this] { on_expiry_timer(); });
}

void admission::on_expiry_timer() {
  expiry_timer_.reset();
  auto now = clock::now();
  std::vector<transport::connected_socket> late;
  while (!waiting_.empty() && waiting_.front().deadline <= now) late.push_back(pop_waiting());
  arm_expiry_timer();
  for (auto& s : late) expired_(std::move(s));
}

std::string admission::describe(error_code code, const std::string& text) {
  return std::string("refused: ") + to_string(code) + ": " + text;
}

void admission::refuse(transport::connected_socket s, error_code code, const std::string& text) {
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
  // Linger: read (and drop) what the client still sends until it hangs up, or the
  // linger time runs out.
  std::uint64_t id = next_linger_++;
  auto* watch = linger_watch::make(loop_, std::move(s.fd), fd,
                                   [this, id](linger_watch& w, int events) {
                                     char sink[4096];
                                     ssize_t n = events < 0 ? 0 : ::read(w.fd(), sink, sizeof sink);
                                     if (n > 0 || (n < 0 && errno == EAGAIN))
                                       w.arm();  // more may come: drop it, wait again
                                     else
                                       end_lingering(id);  // hung up, or failed
                                   });
  io::timer_id timer = loop_->add_timer(clock::now() + linger_time, [this, id] {
    end_lingering(id);  // cancelling this timer, which has run, does nothing
  });
  lingering_.emplace(id, lingering{watch, timer});
  watch->arm();
}

void admission::end_lingering(std::uint64_t id) {
  auto it = lingering_.find(id);
  if (it == lingering_.end()) return;
  loop_->cancel_timer(it->second.timer);
  it->second.watch->close();
  lingering_.erase(it);
}

void admission::start_watchdog(unsigned long long watchdog_usec) {
  if (watchdog_usec == 0) return;
  // systemd advises pinging at half the interval.
  watchdog_every_ = std::chrono::microseconds(watchdog_usec / 2);
  ping_watchdog();
}

void admission::ping_watchdog() {
  transport::sd_notify("WATCHDOG=1");
  watchdog_timer_ = loop_->add_timer(clock::now() + watchdog_every_, [this] { ping_watchdog(); });
}

void admission::stop() {
  if (expiry_timer_) loop_->cancel_timer(*expiry_timer_);
  expiry_timer_.reset();
  if (watchdog_timer_) loop_->cancel_timer(*watchdog_timer_);
  watchdog_timer_.reset();
  waiting_.clear();
  while (!lingering_.empty()) end_lingering(lingering_.begin()->first);
}

}  // namespace bokbok::rpc
