// The seam between the one loop and its backends: a backend's wait() on its own (what it
// hands back, the wake-up), and the reactor's turn (timers and posts are not starved by
// completions that keep arriving). Runs once per backend (tests/meson.build sets
// BOKBOK_BACKEND); the backend tests make the backend it names directly.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "base/unique_fd.hpp"
#include "io/loop.hpp"
#include "io/loop_backend.hpp"
#include "support/engine.hpp"
#include "support/settle.hpp"

using namespace bokbok::io;
using bokbok::base::unique_fd;
using namespace std::chrono_literals;
using bokbok_test::on_loop;
using bokbok_test::patience;
using bokbok_test::settles;
using bokbok_test::start_checked;

namespace {

// The backend BOKBOK_BACKEND names (io_uring when unset and a ring can be made).
std::unique_ptr<loop_backend> make_backend(const loop_options& opts = {}) {
  const char* want = std::getenv("BOKBOK_BACKEND");
  if (want != nullptr && std::strcmp(want, "epoll") == 0) return make_epoll_backend(opts);
  if (want != nullptr && std::strcmp(want, "uring") == 0) return make_uring_backend(opts);
  try {
    return make_uring_backend(opts);
  } catch (const std::system_error&) {
    return make_epoll_backend(opts);
  }
}

// A completion the backend only points to: backends never call it, the reactor does.
struct tag final : completion {
  void complete(int, std::uint32_t) override {}
};

struct pipe_pair {
  unique_fd r, w;
  pipe_pair() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
    r = unique_fd(fds[0]);
    w = unique_fd(fds[1]);
  }
};

// A backend watching its wake-up eventfd, as the reactor sets it up, on this thread.
struct backend_on_this_thread {
  std::unique_ptr<loop_backend> backend;
  unique_fd wake;
  explicit backend_on_this_thread(const loop_options& opts = {})
      : backend(make_backend(opts)), wake(::eventfd(0, EFD_CLOEXEC | backend->wake_fd_flags())) {
    REQUIRE(wake);
    backend->watch_wakeup(wake.get());
  }
  ~backend_on_this_thread() { backend->shutdown(); }

  void fire_wakeup() const {
    std::uint64_t one = 1;
    REQUIRE(::write(wake.get(), &one, sizeof one) == sizeof one);
  }
  bool wakeup_pending() const {
    pollfd p{wake.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }
};

const backend_event* find(const std::vector<backend_event>& events, const completion* c) {
  for (const backend_event& e : events)
    if (e.c == c) return &e;
  return nullptr;
}

}  // namespace

TEST_CASE("a backend's wait hands back each finished operation as its completion, result and flags") {
  backend_on_this_thread b;
  pipe_pair data, ready;
  REQUIRE(::write(data.w.get(), "abc", 3) == 3);
  REQUIRE(::write(ready.w.get(), "x", 1) == 1);
  char buf[16] = {};
  tag read_done, poll_done;
  b.backend->submit_read(data.r.get(), buf, sizeof buf, &read_done);
  b.backend->submit_poll(ready.r.get(), &poll_done);

  std::vector<backend_event> seen, out;
  auto give_up = clock::now() + patience;
  while (seen.size() < 2 && clock::now() < give_up) {
    CHECK_FALSE(b.backend->wait(100ms, out));  // nobody fired the wake-up
    seen.insert(seen.end(), out.begin(), out.end());
    out.clear();
  }
  REQUIRE(seen.size() == 2);
  const backend_event* r = find(seen, &read_done);
  const backend_event* p = find(seen, &poll_done);
  REQUIRE(r != nullptr);
  REQUIRE(p != nullptr);
  CHECK(r->res == 3);
  CHECK(std::string(buf, 3) == "abc");
  CHECK((p->res & POLLIN) != 0);
  // Neither a plain read nor a one-shot poll has a flag to report on either backend.
  CHECK(r->flags == 0);
  CHECK(p->flags == 0);
  b.backend->forget(data.r.get());
  b.backend->forget(ready.r.get());
}

// Waits until `want` operations are back, bounded; what came back.
std::vector<backend_event> wait_for(backend_on_this_thread& b, std::size_t want) {
  std::vector<backend_event> seen, out;
  auto give_up = clock::now() + patience;
  while (seen.size() < want && clock::now() < give_up) {
    b.backend->wait(100ms, out);
    seen.insert(seen.end(), out.begin(), out.end());
    out.clear();
  }
  return seen;
}

TEST_CASE("a lent read takes a buffer only when its data arrives, and one that finds none free says so") {
  loop_options one;
  one.lent_buffers = 1;
  backend_on_this_thread b(one);
  REQUIRE(b.backend->lends());
  pipe_pair idle, busy, third;
  tag idle_read, busy_read, third_read;
  // A read waiting on a pipe with nothing in it holds no buffer: the one buffer goes to
  // the read whose data is there.
  b.backend->submit_read_lent(idle.r.get(), nullptr, &idle_read);
  REQUIRE(::write(busy.w.get(), "abc", 3) == 3);
  b.backend->submit_read_lent(busy.r.get(), nullptr, &busy_read);
  auto seen = wait_for(b, 1);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].c == &busy_read);
  CHECK(seen[0].res == 3);
  REQUIRE((seen[0].flags & lent_buffer_flag) != 0);
  CHECK(std::string(b.backend->lent_data(seen[0].flags), 3) == "abc");
  const std::uint32_t lent = seen[0].flags;

  // While it is lent, a read whose data arrives finds none free: -ENOBUFS, and the data
  // stays where it was.
  REQUIRE(::write(third.w.get(), "xy", 2) == 2);
  b.backend->submit_read_lent(third.r.get(), nullptr, &third_read);
  seen = wait_for(b, 1);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].c == &third_read);
  CHECK(seen[0].res == -ENOBUFS);
  CHECK((seen[0].flags & lent_buffer_flag) == 0);
  char rest[8] = {};
  CHECK(::read(third.r.get(), rest, sizeof rest) == 2);

  // Given back, it is lent again, to the read that waited all along.
  b.backend->give_back(lent);
  REQUIRE(::write(idle.w.get(), "late", 4) == 4);
  seen = wait_for(b, 1);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].c == &idle_read);
  CHECK(seen[0].res == 4);
  REQUIRE((seen[0].flags & lent_buffer_flag) != 0);
  CHECK(std::string(b.backend->lent_data(seen[0].flags), 4) == "late");
  b.backend->give_back(seen[0].flags);
}

TEST_CASE("a backend's wait reports the wake-up apart from completions, consumes it and keeps watching") {
  backend_on_this_thread b;
  std::vector<backend_event> out;
  for (int round = 0; round < 2; ++round) {
    CAPTURE(round);
    b.fire_wakeup();
    bool woken = false;
    auto give_up = clock::now() + patience;
    while (!woken && clock::now() < give_up) {
      woken = b.backend->wait(100ms, out);
      CHECK(out.empty());
    }
    REQUIRE(woken);
    CHECK_FALSE(b.wakeup_pending());  // the counter was read
    // Nothing more to report: a bounded wait returns with nothing.
    CHECK_FALSE(b.backend->wait(20ms, out));
    CHECK(out.empty());
  }
}

TEST_CASE("a backend's unbounded wait returns at once with what submission already finished") {
  backend_on_this_thread b;
  tag bad;
  char buf[4];
  b.backend->submit_read(-1, buf, sizeof buf, &bad);

  // A watchdog fires the wake-up if the wait blocks; then the wait reports it.
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::thread watchdog([&] {
    std::unique_lock lock(m);
    if (!cv.wait_for(lock, patience, [&] { return done; })) b.fire_wakeup();
  });
  std::vector<backend_event> out;
  bool woken = b.backend->wait(std::nullopt, out);
  {
    std::lock_guard lock(m);
    done = true;
  }
  cv.notify_all();
  watchdog.join();
  CHECK_FALSE(woken);
  REQUIRE(out.size() == 1);
  CHECK(out[0].c == &bad);
  CHECK(out[0].res == -EBADF);
}

namespace {

// Completes a poll on an fd that stays readable and submits it again, so a completion
// arrives on every turn of the loop, until stopped or `limit` completions.
class streaming_poll final : public completion {
 public:
  streaming_poll(loop& l, int fd, long limit) : loop_(l), fd_(fd), limit_(limit) {}
  void start() { loop_.submit_poll(fd_, this); }
  void complete(int, std::uint32_t) override {
    long n = ++count_;
    if (!stop_.load() && n < limit_) {
      loop_.submit_poll(fd_, this);
    } else {
      finished_.store(true);
    }
  }
  void stop() { stop_.store(true); }
  long count() const { return count_.load(); }
  bool finished() const { return finished_.load(); }

 private:
  loop& loop_;
  int fd_;
  long limit_;
  std::atomic<long> count_{0};
  std::atomic<bool> stop_{false}, finished_{false};
};

constexpr long stream_limit = 1'000'000;  // far more than the test needs

}  // namespace

TEST_CASE("a timer that falls due while completions keep arriving runs on time") {
  auto l = start_checked();
  pipe_pair p;
  REQUIRE(::write(p.w.get(), "x", 1) == 1);  // never read: the fd stays readable
  streaming_poll stream(*l, p.r.get(), stream_limit);
  std::atomic<bool> ran{false};
  std::atomic<long> count_when_ran{0};
  std::atomic<bool> early{false};
  on_loop(*l, [&] {
    stream.start();
    auto due = clock::now() + 20ms;
    l->add_timer(due, [&, due] {
      early.store(clock::now() < due);
      count_when_ran.store(stream.count());
      ran.store(true);
      stream.stop();
    });
    return 0;
  });
  REQUIRE(settles([&] { return stream.finished(); }));
  CHECK(ran.load());
  CHECK_FALSE(early.load());
  CHECK(count_when_ran.load() > 0);  // completions were streaming when it fell due
  CHECK(stream.count() < stream_limit);
  on_loop(*l, [&] {
    l->forget(p.r.get());
    return 0;
  });
}

TEST_CASE("a function posted from another thread runs while completions keep arriving") {
  auto l = start_checked();
  pipe_pair p;
  REQUIRE(::write(p.w.get(), "x", 1) == 1);
  streaming_poll stream(*l, p.r.get(), stream_limit);
  on_loop(*l, [&] {
    stream.start();
    return 0;
  });
  std::atomic<long> count_when_ran{0};
  REQUIRE(settles([&] { return stream.count() > 0; }));
  l->post([&] {
    count_when_ran.store(stream.count());
    stream.stop();
  });
  REQUIRE(settles([&] { return stream.finished(); }));
  CHECK(count_when_ran.load() > 0);
  CHECK(stream.count() < stream_limit);
  on_loop(*l, [&] {
    l->forget(p.r.get());
    return 0;
  });
}
