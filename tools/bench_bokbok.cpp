// The bokbok side of `bokbok bench`: a pair of connections over one transport whose
// peer's request handler returns each request as its response. A payload travels as a
// message of one field; the message is moved in and out of request(), so the figures
// include what the library does with it, not copies made by the benchmark.
#include <optional>

#include "bench.hpp"

namespace bokbok::tools::bench {
namespace {

class bokbok_echo final : public echo_client {
 public:
  bokbok_echo(const transport& t, bool inline_handlers) {
    options peer;
    peer.on_request = [](connection&, message request) { return request; };
    peer.inline_handlers = inline_handlers;
    bokbok_pair pair = t.open_bokbok(options{}, peer);
    caller_.emplace(std::move(pair.caller));
    peer_ = std::move(pair.peer);
  }

  ~bokbok_echo() override {
    // Dropping handles does not close a connection; closing either end closes both.
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

 private:
  std::optional<connection> caller_;
  std::optional<connection> peer_;
};

}  // namespace

std::unique_ptr<echo_client> open_bokbok_echo(const transport& t, bool inline_handlers) {
  return std::make_unique<bokbok_echo>(t, inline_handlers);
}

}  // namespace bokbok::tools::bench
