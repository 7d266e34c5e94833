// The bokbok side of `bokbok bench`: a pair of connections over one transport whose
// peer's request handler returns each request as its response. A payload travels as a
// message of one field; the message is moved in and out of request(), so the figures
// include what the library does with it, not copies made by the benchmark.
#include <deque>
#include <future>
#include <optional>

#include "bench.hpp"

namespace bokbok::tools::bench {
namespace {

class bokbok_echo final : public echo_client {
 public:
  bokbok_echo(const transport& t, bool inline_handlers, bool keys) {
    options caller, peer;
    peer.on_request = [](connection&, message request) { return request; };
    peer.inline_handlers = inline_handlers;
    if (keys) use_bench_keys(caller, peer);
    bokbok_pair pair = t.open_bokbok(caller, peer);
    // The loop thread now exists (started on first use).
    pin_event_loops(pair.peer.has_value());
    caller_.emplace(std::move(pair.caller));
    peer_ = std::move(pair.peer);
  }

  ~bokbok_echo() override {
    // Dropping the last handle would close each only gracefully and later; close both
    // now and wait, so the next figure starts on a quiet machine.
    caller_->close();
    if (peer_) peer_->close();
    caller_->wait_closed();  // a child peer: until it has been reaped
    if (peer_) peer_->wait_closed();
  }

  void round_trip(std::string& payload) override {
    message request;
    request.push_back(std::move(payload));
    message response = caller_->request(std::move(request));
    if (response.size() != 1)
      throw check_failed("bokbok echo: the response has " +
                         std::to_string(response.size()) + " fields, not 1");
    payload = std::move(response[0]);
  }

  bool concurrent() const override { return true; }

  // Pipelining from one thread, as the raw baseline does it: requests sent with
  // request_async, answers taken from their futures in the order sent.
  bool pipelines() const override { return true; }
  void send_request(const std::string& payload) override {
    message request;
    request.push_back(payload);  // the benchmark keeps its copy to check the echo
    in_flight_.push_back(caller_->request_async(std::move(request)));
  }
  void receive_response(std::string& payload) override {
    if (in_flight_.empty()) throw check_failed("bokbok echo: no request in flight");
    message response = in_flight_.front().get();
    in_flight_.pop_front();
    if (response.size() != 1)
      throw check_failed("bokbok echo: the response has " +
                         std::to_string(response.size()) + " fields, not 1");
    payload = std::move(response[0]);
  }

 private:
  std::deque<std::future<message>> in_flight_;
  std::optional<connection> caller_;
  std::optional<connection> peer_;
};

}  // namespace

std::unique_ptr<echo_client> open_bokbok_echo(const transport& t, bool inline_handlers,
                                              bool keys) {
  return std::make_unique<bokbok_echo>(t, inline_handlers, keys);
}

void use_bench_keys(options& caller, options& peer) {
  auto k = std::make_shared<const key>(key::generate());
  caller.keys.user = "bench";
  caller.keys.key = k;
  peer.keys.key_for_user = [k](std::string_view user) -> std::optional<key> {
    if (user != "bench") return std::nullopt;
    return k->clone();
  };
}

double measure_handshakes(const settings& s, bool keys) {
  options caller, peer;
  if (keys) use_bench_keys(caller, peer);
  std::size_t n = 0;
  auto start = clock_type::now();
  auto end = start + std::chrono::duration_cast<clock_type::duration>(s.figure_time);
  while (n < 20'000 && (n < 10 || clock_type::now() < end)) {
    auto [a, b] = connect_socketpair(caller, peer);
    if (n == 0) pin_event_loops(true);
    a.close();
    a.wait_closed();
    b.wait_closed();
    ++n;
  }
  return double(n) / std::chrono::duration<double>(clock_type::now() - start).count();
}

}  // namespace bokbok::tools::bench
