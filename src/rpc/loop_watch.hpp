// loop_watch: a descriptor the event loop waits on for readability (io::loop::submit_poll),
// again each time it is armed, together with what owns the descriptor (a listener, a
// signalfd, a refused client's socket), so the descriptor stays open while a wait is in
// flight and is closed only after the loop has forgotten it.
//
// Threads: loop thread only, every member. Lifetime: made with new (make()); ends itself
// through close(): a wait in flight is cancelled, and once none is, the loop forgets the
// descriptor, `owned` is destroyed and the watch deletes itself. It holds a reference to
// the loop until then, so the loop outlives every wait it has in flight.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include "io/loop.hpp"

namespace bokbok::rpc {

template <class Owned>
class loop_watch final : public io::completion {
 public:
  // Called with the poll events seen (> 0) or -errno (never -ECANCELED: a cancelled
  // wait ends the watch). The watch is disarmed then; arm() waits again. May close().
  using ready_fn = std::function<void(loop_watch&, int events)>;

  static loop_watch* make(std::shared_ptr<io::loop> loop, Owned owned, int fd, ready_fn ready) {
    return new loop_watch(std::move(loop), std::move(owned), fd, std::move(ready));
  }
  loop_watch(const loop_watch&) = delete;
  loop_watch& operator=(const loop_watch&) = delete;

  Owned& owned() { return owned_; }
  int fd() const { return fd_; }
  bool armed() const { return armed_; }

  // Waits (once) for the descriptor to be readable; does nothing when already waiting.
  void arm() {
    if (armed_ || closing_) return;
    armed_ = true;
    loop_->submit_poll(fd_, this);
  }

  // Ends the watch as described above. No ready callback runs after this; `then`, if
  // given, runs once `owned` is destroyed (inside this call when no wait was in flight).
  void close(std::function<void()> then = {}) {
    if (closing_) return;
    closing_ = true;
    then_ = std::move(then);
    if (armed_)
      loop_->cancel(this);  // complete() finishes
    else if (!in_ready_)
      finish();  // else complete() does, once ready_ has returned
  }

 private:
  loop_watch(std::shared_ptr<io::loop> loop, Owned owned, int fd, ready_fn ready)
      : loop_(std::move(loop)), owned_(std::move(owned)), fd_(fd), ready_(std::move(ready)) {}
  ~loop_watch() = default;

  void complete(int result, std::uint32_t) override {
    armed_ = false;
    if (closing_) return finish();
    in_ready_ = true;
    ready_(*this, result);
    in_ready_ = false;
    if (closing_ && !armed_) finish();
  }
  void finish() {
    loop_->forget(fd_);
    auto keep = std::move(loop_);  // dropped last, after owned_ has closed the fd
    auto then = std::move(then_);
    delete this;
    if (then) then();
  }

  std::shared_ptr<io::loop> loop_;
  Owned owned_;
  int fd_;
  ready_fn ready_;
  std::function<void()> then_;
  bool armed_ = false, closing_ = false, in_ready_ = false;
};

}  // namespace bokbok::rpc
