// duplex_stream on real pipes and sockets, once per backend (BOKBOK_BACKEND is set by
// tests/meson.build).
#include "io/duplex_stream.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "io/loop.hpp"
#include "support/engine.hpp"
#include "support/settle.hpp"
#include "base/unique_fd.hpp"

using namespace bokbok::io;
using bokbok::base::unique_fd;
using namespace std::chrono_literals;
using bokbok_test::on_loop;
using bokbok_test::patience;
using bokbok_test::start_checked;

namespace {

constexpr auto bulk_patience = 120s;  // the 64 MiB transfers, sanitizers included



bool fd_open(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

// Byte `offset` of the stream with this seed: a table whose length is prime, so whole
// chunks that arrive out of place do not match.
class pattern {
 public:
  static constexpr std::size_t period = 65521;
  explicit pattern(std::uint32_t seed, std::size_t max_chunk = 1u << 20)
      : bytes_(period + max_chunk), max_chunk_(max_chunk) {
    std::uint32_t x = seed * 2654435761u + 1;
    for (std::size_t i = 0; i < period; ++i) {
      x = x * 1664525u + 1013904223u;
      bytes_[i] = static_cast<char>(x >> 24);
    }
    for (std::size_t i = period; i < bytes_.size(); ++i) bytes_[i] = bytes_[i - period];
  }
  // The stream from `offset`, contiguous for `max_chunk` bytes.
  const char* at(std::size_t offset) const { return bytes_.data() + offset % period; }
  bool matches(std::size_t offset, std::string_view got) const {
    while (!got.empty()) {
      std::size_t n = std::min(got.size(), max_chunk_);
      if (std::memcmp(at(offset), got.data(), n) != 0) return false;
      offset += n;
      got.remove_prefix(n);
    }
    return true;
  }

 private:
  std::vector<char> bytes_;
  std::size_t max_chunk_;
};

// Records every event; the test thread watches through the mutex.
class recorder : public stream_events {
 public:
  void on_data(std::string_view bytes) override {
    {
      std::lock_guard lock(mutex_);
      if (closed_) ++after_close_;
      if (expect_ != nullptr) {
        if (!expect_->matches(received_, bytes)) mismatch_ = true;
      } else {
        data_.append(bytes);
      }
      received_ += bytes.size();
      cv_.notify_all();
    }
    if (on_data_hook) on_data_hook(bytes);
  }
  void on_read_end(int err) override {
    std::lock_guard lock(mutex_);
    if (closed_) ++after_close_;
    ++read_ends_;
    read_end_ = err;
    cv_.notify_all();
  }
  void on_write_done(int err) override {
    {
      std::lock_guard lock(mutex_);
      if (closed_) ++after_close_;
      write_dones_.push_back(err);
      cv_.notify_all();
    }
    if (on_write_done_hook) on_write_done_hook(err);
  }

  void expect(const pattern* p) { expect_ = p; }
  void mark_closed() {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  template <class Pred>
  bool wait(Pred pred, std::chrono::seconds limit = patience) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, limit, [&] { return pred(*this); });
  }
  // Read these only under wait() or once the loop is quiet.
  std::string data_;
  std::size_t received_ = 0;
  bool mismatch_ = false;
  int read_ends_ = 0;
  std::optional<int> read_end_;
  std::vector<int> write_dones_;
  int after_close_ = 0;
  std::function<void(std::string_view)> on_data_hook;  // runs on the loop thread
  std::function<void(int)> on_write_done_hook;

  std::string data() {
    std::lock_guard lock(mutex_);
    return data_;
  }
  int after_close() {
    std::lock_guard lock(mutex_);
    return after_close_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  const pattern* expect_ = nullptr;
  bool closed_ = false;
};

struct fd_pair {
  unique_fd a, b;
};

fd_pair make_pipe() {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  return {unique_fd(fds[0]), unique_fd(fds[1])};  // a reads, b writes
}

fd_pair make_socketpair() {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  return {unique_fd(sv[0]), unique_fd(sv[1])};
}

// Writes `total` bytes of `p` through `s` in batches of three iovecs, then ends the
// write half. Runs on the loop thread, driven by on_write_done.
class pump {
 public:
  pump(const pattern& p, std::size_t total, std::size_t batch) : p_(p), total_(total), batch_(batch) {}
  void start(duplex_stream& s) {
    s_ = &s;
    next();
  }
  void on_done(int err) {
    if (err != 0) {
      failed_ = err;
      return;
    }
    next();
  }
  std::atomic<int> failed_{0};

 private:
  void next() {
    if (sent_ == total_) {
      s_->shutdown_write();
      return;
    }
    std::size_t n = std::min(batch_, total_ - sent_);
    const char* base = p_.at(sent_);
    std::size_t a = n / 3, b = n / 2;
    std::vector<iovec> iov = {{const_cast<char*>(base), a},
                              {const_cast<char*>(base + a), b - a},
                              {const_cast<char*>(base + b), n - b}};
    sent_ += n;
    s_->write(std::move(iov));
  }
  const pattern& p_;
  std::size_t total_, batch_, sent_ = 0;
  duplex_stream* s_ = nullptr;
};

// One side of a bulk transfer: a stream, what it sends, what it checks.
struct side {
  side(std::uint32_t send_seed, std::uint32_t recv_seed, std::size_t total, std::size_t batch)
      : sends(send_seed, batch), expects(recv_seed, batch), out(sends, total, batch) {
    events.expect(&expects);
    events.on_write_done_hook = [this](int err) { out.on_done(err); };
  }
  pattern sends, expects;
  recorder events;
  pump out;
  std::shared_ptr<duplex_stream> stream;
};

// Runs a two-way transfer between two streams, checks it all, closes both.
void transfer_both_ways(std::shared_ptr<loop> l, std::size_t total, std::size_t batch,
                        unique_fd a_in, unique_fd a_out, unique_fd b_in, unique_fd b_out) {
  side a(1, 2, total, batch), b(2, 1, total, batch);
  std::vector<int> fds = {a_in.get(), a_out.get(), b_in.get(), b_out.get()};
  a.stream = duplex_stream::create(l, std::move(a_in), std::move(a_out), &a.events);
  b.stream = duplex_stream::create(l, std::move(b_in), std::move(b_out), &b.events);
  on_loop(*l, [&] {
    for (side* s : {&a, &b}) {
      s->stream->start_reading();
      s->out.start(*s->stream);
    }
    return 0;
  });
  for (side* s : {&a, &b}) {
    bool ended = s->events.wait([](recorder& r) { return r.read_ends_ > 0; }, bulk_patience);
    REQUIRE(ended);
    CHECK(s->out.failed_ == 0);
  }
  for (side* s : {&a, &b}) {
    s->events.wait([&](recorder& r) { return r.write_dones_.size() * batch >= total; });
    CHECK(s->events.read_end_ == 0);
    CHECK(s->events.received_ == total);
    CHECK_FALSE(s->events.mismatch_);
  }
  std::weak_ptr<duplex_stream> wa = a.stream, wb = b.stream;
  on_loop(*l, [&] {
    a.stream->close();
    b.stream->close();
    a.stream.reset();
    b.stream.reset();
    return 0;
  });
  // Closed once each, and only by the streams (a second close would hit a reused
  // number only by accident, so check that every number is free now).
  auto give_up = std::chrono::steady_clock::now() + patience;
  while ((!wa.expired() || !wb.expired()) && std::chrono::steady_clock::now() < give_up)
    on_loop(*l, [] { return 0; });
  CHECK(wa.expired());
  CHECK(wb.expired());
  for (int fd : fds)
    if (fd >= 0) CHECK_FALSE(fd_open(fd));
}

}  // namespace

TEST_CASE("64 MiB flow both ways at once with every byte checked") {
  auto l = start_checked();
  constexpr std::size_t total = 64u << 20;
  constexpr std::size_t batch = 1u << 20;
  SUBCASE("over a pipe pair") {
    auto ab = make_pipe();  // a writes to b
    auto ba = make_pipe();  // b writes to a
    transfer_both_ways(l, total, batch, std::move(ba.a), std::move(ab.b), std::move(ab.a),
                       std::move(ba.b));
  }
  SUBCASE("over a socketpair, with separate in and out fds on each side") {
    auto sp = make_socketpair();
    unique_fd a_out(::fcntl(sp.a.get(), F_DUPFD_CLOEXEC, 0));
    unique_fd b_out(::fcntl(sp.b.get(), F_DUPFD_CLOEXEC, 0));
    transfer_both_ways(l, total, batch, std::move(sp.a), std::move(a_out), std::move(sp.b),
                       std::move(b_out));
  }
  SUBCASE("over one socket for both halves (no out fd, or the same number twice)") {
    auto sp = make_socketpair();
    int b = sp.b.get();
    transfer_both_ways(l, total, batch, std::move(sp.a), unique_fd(), std::move(sp.b),
                       unique_fd(b));
  }
}

TEST_CASE("partial writes into a 4096-byte pipe are continued to the last byte") {
  auto l = start_checked();
  auto p = make_pipe();
  REQUIRE(::fcntl(p.b.get(), F_SETPIPE_SZ, 4096) >= 4096);
  REQUIRE(::fcntl(p.b.get(), F_GETPIPE_SZ) == 4096);
  pattern pat(7);
  constexpr std::size_t total = 1u << 20;
  // 50 iovecs of uneven sizes, and more than IOV_MAX tiny ones after them.
  std::vector<iovec> iov;
  std::size_t off = 0;
  for (int i = 0; off < total / 2; ++i) {
    std::size_t n = std::min<std::size_t>(total / 2 - off, 1000 + 977 * (i % 37));
    iov.push_back({const_cast<char*>(pat.at(off)), n});
    off += n;
  }
  while (off < total) {
    std::size_t n = std::min<std::size_t>(total - off, 200);
    iov.push_back({const_cast<char*>(pat.at(off)), n});
    off += n;
  }
  REQUIRE(iov.size() > IOV_MAX);
  recorder events;
  int reader_fd = p.a.get();
  auto s = duplex_stream::create(l, unique_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)),
                                 std::move(p.b), &events);
  on_loop(*l, [&] {
    s->write(iov);
    CHECK(s->writing());
    return 0;
  });
  // Read it back slowly, a page at a time, with a bounded wait on each read.
  std::string got;
  char buf[4096];
  while (got.size() < total) {
    pollfd pfd{reader_fd, POLLIN, 0};
    REQUIRE(::poll(&pfd, 1, 10'000) == 1);
    ssize_t n = ::read(reader_fd, buf, sizeof buf);
    REQUIRE(n > 0);
    got.append(buf, static_cast<std::size_t>(n));
  }
  REQUIRE(events.wait([](recorder& r) { return !r.write_dones_.empty(); }));
  CHECK(events.write_dones_ == std::vector<int>{0});
  CHECK(pat.matches(0, got));
  CHECK_FALSE(on_loop(*l, [&] { return s->writing(); }));
  on_loop(*l, [&] {
    s->close();
    return 0;
  });
}

TEST_CASE("end of file delivers the data then on_read_end(0)") {
  auto l = start_checked();
  auto p = make_pipe();
  recorder events;
  auto s = duplex_stream::create(l, std::move(p.a), unique_fd(::open("/dev/null", O_WRONLY | O_CLOEXEC)),
                                 &events);
  on_loop(*l, [&] {
    s->start_reading();
    return 0;
  });
  REQUIRE(::write(p.b.get(), "abc", 3) == 3);
  REQUIRE(events.wait([](recorder& r) { return r.received_ == 3; }));
  p.b.reset();
  REQUIRE(events.wait([](recorder& r) { return r.read_ends_ > 0; }));
  CHECK(events.data() == "abc");
  CHECK(events.read_end_ == 0);
  on_loop(*l, [&] {
    s->start_reading();  // after the end: does nothing
    s->close();
    return 0;
  });
  CHECK(events.read_ends_ == 1);
}

TEST_CASE("a regular file can be read to its end (stdin redirected from a file)") {
  auto l = start_checked();
  char path[] = "/tmp/bokbok-duplex-XXXXXX";
  unique_fd file(::mkstemp(path));
  REQUIRE(file);
  ::unlink(path);
  pattern pat(9);
  constexpr std::size_t total = 600'000;  // more than one 256 KiB read
  for (std::size_t off = 0; off < total;) {
    std::size_t n = std::min<std::size_t>(total - off, 100'000);
    REQUIRE(::write(file.get(), pat.at(off), n) == static_cast<ssize_t>(n));
    off += n;
  }
  REQUIRE(::lseek(file.get(), 0, SEEK_SET) == 0);
  recorder events;
  events.expect(&pat);
  auto s = duplex_stream::create(l, std::move(file),
                                 unique_fd(::open("/dev/null", O_WRONLY | O_CLOEXEC)), &events);
  on_loop(*l, [&] {
    s->start_reading();
    return 0;
  });
  REQUIRE(events.wait([](recorder& r) { return r.read_ends_ > 0; }));
  CHECK(events.read_end_ == 0);
  CHECK(events.received_ == total);
  CHECK_FALSE(events.mismatch_);
  on_loop(*l, [&] {
    s->close();
    return 0;
  });
}

TEST_CASE("shutdown_write makes the peer see end of file while reads continue") {
  auto l = start_checked();
  recorder events;
  int peer_read = -1, peer_write = -1, out_fd = -1;
  fd_pair keep_a, keep_b;
  std::shared_ptr<duplex_stream> s;
  bool pipe_out = false;
  SUBCASE("on a socket") {
    auto sp = make_socketpair();
    peer_read = peer_write = sp.b.get();
    keep_b = std::move(sp);
    s = duplex_stream::create(l, std::move(keep_b.a), unique_fd(), &events);
  }
  SUBCASE("on a pipe pair: the out fd is closed") {
    auto in = make_pipe(), out = make_pipe();
    peer_write = in.b.get();
    peer_read = out.a.get();
    out_fd = out.b.get();
    pipe_out = true;
    keep_a = {std::move(in.b), std::move(out.a)};
    s = duplex_stream::create(l, std::move(in.a), std::move(out.b), &events);
  }
  SUBCASE("on a borrowed pipe fd (stdout): it stays open, on /dev/null") {
    auto in = make_pipe(), out = make_pipe();
    peer_write = in.b.get();
    peer_read = out.a.get();
    out_fd = out.b.get();
    keep_a = {std::move(in.b), std::move(out.a)};
    keep_b = {std::move(out.b), unique_fd()};  // the real owner
    s = duplex_stream::create(l, std::move(in.a), unique_fd::borrow(out_fd), &events);
  }
  std::string msg = "hello";
  on_loop(*l, [&] {
    s->start_reading();
    s->write({{msg.data(), msg.size()}});
    s->shutdown_write();  // with the batch in flight: after it
    return 0;
  });
  std::string got;
  char buf[64];
  for (int i = 0; i < 100; ++i) {
    pollfd pfd{peer_read, POLLIN, 0};
    REQUIRE(::poll(&pfd, 1, 10'000) == 1);
    ssize_t n = ::read(peer_read, buf, sizeof buf);
    REQUIRE(n >= 0);
    if (n == 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  CHECK(got == "hello");
  REQUIRE(events.wait([](recorder& r) { return !r.write_dones_.empty(); }));
  CHECK(events.write_dones_ == std::vector<int>{0});
  if (pipe_out) CHECK_FALSE(fd_open(out_fd));
  if (keep_b.a) CHECK(fd_open(out_fd));
  // Reads go on.
  REQUIRE(::write(peer_write, "world", 5) == 5);
  REQUIRE(events.wait([](recorder& r) { return r.received_ == 5; }));
  CHECK(events.data() == "world");
  // A write after the shutdown fails quietly with -EPIPE.
  on_loop(*l, [&] {
    s->write({{msg.data(), msg.size()}});
    return 0;
  });
  REQUIRE(events.wait([](recorder& r) { return r.write_dones_.size() == 2; }));
  CHECK(events.write_dones_[1] == -EPIPE);
  on_loop(*l, [&] {
    s->close();
    return 0;
  });
}

TEST_CASE("close() with reads and writes in flight delivers nothing after and closes the fds once the kernel is done") {
  auto l = start_checked();
  for (int round = 0; round < 30; ++round) {
    CAPTURE(round);
    auto in = make_pipe(), out = make_pipe();
    REQUIRE(::fcntl(out.b.get(), F_SETPIPE_SZ, 4096) >= 4096);
    int in_fd = in.a.get(), out_fd = out.b.get();
    recorder events;
    auto buffers = std::make_shared<std::vector<char>>(1u << 20, 'x');
    std::weak_ptr<std::vector<char>> buffers_watch = buffers;
    auto s = duplex_stream::create(l, std::move(in.a), std::move(out.b), &events);
    std::weak_ptr<duplex_stream> watch = s;
    on_loop(*l, [&] {
      s->start_reading();
      s->write({{buffers->data(), buffers->size()}}, buffers);
      return 0;
    });
    buffers.reset();
    on_loop(*l, [] { return 0; });  // the operations are in the kernel now
    // Data arrives as close() runs: its read may complete, but must not be delivered.
    if (round % 2 == 1) REQUIRE(::write(in.b.get(), "late", 4) == 4);
    bool open_at_close = on_loop(*l, [&] {
      s->close();
      events.mark_closed();
      bool open = fd_open(in_fd) && fd_open(out_fd);
      s->close();  // idempotent
      s.reset();
      return open;
    });
    CHECK(open_at_close);  // completions have not arrived yet
    auto give_up = std::chrono::steady_clock::now() + patience;
    while (!watch.expired() && std::chrono::steady_clock::now() < give_up)
      on_loop(*l, [] { return 0; });
    REQUIRE(watch.expired());
    CHECK_FALSE(fd_open(in_fd));
    CHECK_FALSE(fd_open(out_fd));
    CHECK(buffers_watch.expired());
    on_loop(*l, [] { return 0; });
    CHECK(events.after_close() == 0);
  }
}

TEST_CASE("close() from inside on_data stops every later event") {
  auto l = start_checked();
  auto sp = make_socketpair();
  recorder events;
  std::shared_ptr<duplex_stream> s = duplex_stream::create(l, std::move(sp.a), unique_fd(), &events);
  events.on_data_hook = [&](std::string_view) {
    s->close();
    events.mark_closed();
  };
  std::weak_ptr<duplex_stream> watch = s;
  on_loop(*l, [&] {
    s->start_reading();
    return 0;
  });
  REQUIRE(::write(sp.b.get(), "one", 3) == 3);
  REQUIRE(events.wait([](recorder& r) { return r.received_ > 0; }));
  // The stream may have closed its end already: no SIGPIPE for this thread, please.
  ::send(sp.b.get(), "two", 3, MSG_NOSIGNAL);
  sp.b.reset();
  on_loop(*l, [&] {
    s.reset();
    return 0;
  });
  auto give_up = std::chrono::steady_clock::now() + patience;
  while (!watch.expired() && std::chrono::steady_clock::now() < give_up)
    on_loop(*l, [] { return 0; });
  CHECK(watch.expired());
  CHECK(events.after_close() == 0);
  CHECK(events.read_ends_ == 0);
}

TEST_CASE("borrowed fds stay open after close()") {
  auto l = start_checked();
  auto in = make_pipe(), out = make_pipe();
  recorder events;
  auto s = duplex_stream::create(l, unique_fd::borrow(in.a.get()), unique_fd::borrow(out.b.get()),
                                 &events);
  std::weak_ptr<duplex_stream> watch = s;
  std::string msg = "borrowed";
  on_loop(*l, [&] {
    s->start_reading();
    s->write({{msg.data(), msg.size()}});
    return 0;
  });
  REQUIRE(events.wait([](recorder& r) { return !r.write_dones_.empty(); }));
  on_loop(*l, [&] {
    s->close();
    s.reset();
    return 0;
  });
  auto give_up = std::chrono::steady_clock::now() + patience;
  while (!watch.expired() && std::chrono::steady_clock::now() < give_up)
    on_loop(*l, [] { return 0; });
  REQUIRE(watch.expired());
  CHECK(fd_open(in.a.get()));
  CHECK(fd_open(out.b.get()));
  char buf[16];
  CHECK(::read(out.a.get(), buf, sizeof buf) == static_cast<ssize_t>(msg.size()));
}

TEST_CASE("stop_reading holds data back until start_reading") {
  auto l = start_checked();
  auto sp = make_socketpair();
  int fd = sp.a.get();
  recorder events;
  auto s = duplex_stream::create(l, std::move(sp.a), unique_fd(), &events);
  on_loop(*l, [&] {
    s->start_reading();
    s->stop_reading();  // the read already in flight will be held
    return 0;
  });
  auto unread = [&] {
    int n = -1;
    REQUIRE(::ioctl(fd, FIONREAD, &n) == 0);
    return n;
  };
  REQUIRE(::write(sp.b.get(), "abc", 3) == 3);
  auto give_up = std::chrono::steady_clock::now() + patience;
  while (unread() != 0 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  REQUIRE(unread() == 0);  // taken by the read in flight
  // The bytes leave the socket's queue while that read is still running on the loop
  // thread (io_uring's retry after its poll, or epoll's read()): a byte written now could
  // still join it. One turn of the loop waits for the read to be over.
  on_loop(*l, [] { return 0; });
  REQUIRE(::write(sp.b.get(), "def", 3) == 3);
  on_loop(*l, [] { return 0; });
  on_loop(*l, [] { return 0; });
  CHECK(unread() == 3);  // no new read was submitted
  CHECK(events.data().empty());
  on_loop(*l, [&] {
    s->start_reading();
    return 0;
  });
  REQUIRE(events.wait([](recorder& r) { return r.received_ == 6; }));
  CHECK(events.data() == "abcdef");
  on_loop(*l, [&] {
    s->close();
    return 0;
  });
}

TEST_CASE("an empty batch completes with on_write_done(0) on a later turn") {
  auto l = start_checked();
  auto sp = make_socketpair();
  recorder events;
  auto s = duplex_stream::create(l, std::move(sp.a), unique_fd(), &events);
  bool inline_done = on_loop(*l, [&] {
    s->write({});
    return !events.write_dones_.empty();
  });
  CHECK_FALSE(inline_done);
  REQUIRE(events.wait([](recorder& r) { return !r.write_dones_.empty(); }));
  CHECK(events.write_dones_ == std::vector<int>{0});
  on_loop(*l, [&] {
    s->close();
    return 0;
  });
}

TEST_CASE("a write to a pipe with no reader ends with on_write_done(-EPIPE)") {
  auto l = start_checked();
  auto p = make_pipe();
  p.a.reset();
  recorder events;
  auto s = duplex_stream::create(l, unique_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)),
                                 std::move(p.b), &events);
  std::string msg = "x";
  on_loop(*l, [&] {
    s->write({{msg.data(), 1}});
    return 0;
  });
  REQUIRE(events.wait([](recorder& r) { return !r.write_dones_.empty(); }));
  CHECK(events.write_dones_ == std::vector<int>{-EPIPE});
  on_loop(*l, [&] {
    s->close();
    return 0;
  });
}

TEST_CASE("many streams share one loop") {
  auto l = start_checked();
  constexpr int pairs = 64;
  constexpr std::size_t total = 256u << 10;
  std::vector<std::unique_ptr<side>> sides;
  for (int i = 0; i < pairs; ++i) {
    auto sp = make_socketpair();
    auto a = std::make_unique<side>(2 * i + 1, 2 * i + 2, total, 48u << 10);
    auto b = std::make_unique<side>(2 * i + 2, 2 * i + 1, total, 48u << 10);
    a->stream = duplex_stream::create(l, std::move(sp.a), unique_fd(), &a->events);
    b->stream = duplex_stream::create(l, std::move(sp.b), unique_fd(), &b->events);
    sides.push_back(std::move(a));
    sides.push_back(std::move(b));
  }
  on_loop(*l, [&] {
    for (auto& s : sides) {
      s->stream->start_reading();
      s->out.start(*s->stream);
    }
    return 0;
  });
  for (auto& s : sides) {
    REQUIRE(s->events.wait([](recorder& r) { return r.read_ends_ > 0; }, bulk_patience));
    CHECK(s->events.read_end_ == 0);
    CHECK(s->events.received_ == total);
    CHECK_FALSE(s->events.mismatch_);
    CHECK(s->out.failed_ == 0);
  }
  on_loop(*l, [&] {
    for (auto& s : sides) s->stream->close();
    return 0;
  });
  for (auto& s : sides) {
    std::weak_ptr<duplex_stream> w = s->stream;
    on_loop(*l, [&] {
      s->stream.reset();
      return 0;
    });
    auto give_up = std::chrono::steady_clock::now() + patience;
    while (!w.expired() && std::chrono::steady_clock::now() < give_up)
      on_loop(*l, [] { return 0; });
    CHECK(w.expired());
  }
}

TEST_CASE("streams whose reads find no lent buffer free read into their own, and lose nothing") {
  // One buffer to lend: when the data of many streams arrives at once, all but one
  // read find it taken (-ENOBUFS) and are made again into a buffer of their own.
  loop_options one;
  one.lent_buffers = 1;
  auto l = start_checked(one);
  REQUIRE(l->lends());
  constexpr int streams = 16;
  constexpr int rounds = 20;
  std::vector<unique_fd> writers;
  std::vector<std::unique_ptr<recorder>> events;
  std::vector<std::shared_ptr<duplex_stream>> readers;
  for (int i = 0; i < streams; ++i) {
    auto sp = make_socketpair();
    writers.push_back(std::move(sp.b));
    events.push_back(std::make_unique<recorder>());
    readers.push_back(duplex_stream::create(l, std::move(sp.a), unique_fd(), events.back().get()));
  }
  // Round r writes "<r>:<i>;" to every stream before the loop reads any of them.
  std::vector<std::string> want(streams);
  for (int r = 0; r < rounds; ++r) {
    on_loop(*l, [&] {
      for (auto& s : readers) s->stop_reading();
      return 0;
    });
    for (int i = 0; i < streams; ++i) {
      std::string chunk = std::to_string(r) + ":" + std::to_string(i) + ";";
      want[std::size_t(i)] += chunk;
      REQUIRE(::write(writers[std::size_t(i)].get(), chunk.data(), chunk.size()) ==
              ssize_t(chunk.size()));
    }
    on_loop(*l, [&] {
      for (auto& s : readers) s->start_reading();
      return 0;
    });
    for (int i = 0; i < streams; ++i) {
      auto& e = *events[std::size_t(i)];
      std::size_t n = want[std::size_t(i)].size();
      REQUIRE(e.wait([n](recorder& rec) { return rec.received_ == n; }));
      CHECK(e.data() == want[std::size_t(i)]);
    }
  }
  on_loop(*l, [&] {
    for (auto& s : readers) s->close();
    return 0;
  });
}

// ---- try_write_now: the writer's shortcut, from any thread ----

namespace {

using write_status = try_write_result::status;

// Reads what is in `fd` now (non-blocking), up to `limit` bytes.
std::string drain(int fd, std::size_t limit = 1u << 20) {
  std::string got;
  char buf[4096];
  while (got.size() < limit) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, 0) != 1) break;
    ssize_t n = ::read(fd, buf, std::min(sizeof buf, limit - got.size()));
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

// Reads `fd` until end of file (bounded by `patience` per read).
std::string read_to_end(int fd) {
  std::string got;
  char buf[4096];
  for (;;) {
    pollfd pfd{fd, POLLIN, 0};
    REQUIRE(::poll(&pfd, 1, 10'000) == 1);
    ssize_t n = ::read(fd, buf, sizeof buf);
    REQUIRE(n >= 0);
    if (n == 0) return got;
    got.append(buf, static_cast<std::size_t>(n));
  }
}

void close_on_loop(loop& l, duplex_stream& s) {
  on_loop(l, [&] {
    s.close();
    return 0;
  });
}

// SIGPIPE's default action for the scope: a SIGPIPE that reached this process kills it.
class default_sigpipe {
 public:
  default_sigpipe() {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &dfl, &old_);
  }
  ~default_sigpipe() { sigaction(SIGPIPE, &old_, nullptr); }

 private:
  struct sigaction old_ {};
};

bool sigpipe_pending_here() {
  sigset_t set;
  sigpending(&set);
  return sigismember(&set, SIGPIPE) == 1;
}

bool sigpipe_blocked_here() {
  sigset_t set;
  pthread_sigmask(SIG_BLOCK, nullptr, &set);
  return sigismember(&set, SIGPIPE) == 1;
}

}  // namespace

TEST_CASE("try_write_now writes from another thread and says how much, on a socket and a pipe") {
  auto l = start_checked();
  recorder events;
  std::shared_ptr<duplex_stream> s;
  int peer = -1;
  fd_pair keep;
  SUBCASE("a socket for both halves") {
    auto sp = make_socketpair();
    peer = sp.b.get();
    keep.b = std::move(sp.b);
    s = duplex_stream::create(l, std::move(sp.a), unique_fd(), &events);
  }
  SUBCASE("a pipe pair") {
    auto in = make_pipe(), out = make_pipe();
    peer = out.a.get();
    keep = {std::move(in.b), std::move(out.a)};
    s = duplex_stream::create(l, std::move(in.a), std::move(out.b), &events);
  }
  auto r = std::async(std::launch::async, [&] { return s->try_write_now("hello"); }).get();
  CHECK(r.what == write_status::wrote);
  CHECK(r.written == 5);
  CHECK(drain(peer) == "hello");
  // Nothing to write: nothing is, and the stream says it could have been.
  r = s->try_write_now("");
  CHECK(r.what == write_status::wrote);
  CHECK(r.written == 0);
  // From the loop thread too, and then the loop's own batch follows.
  std::string batch = " world";
  r = on_loop(*l, [&] {
    auto w = s->try_write_now(",");
    s->write({{batch.data(), batch.size()}});
    return w;
  });
  CHECK(r.what == write_status::wrote);
  REQUIRE(events.wait([](recorder& e) { return !e.write_dones_.empty(); }));
  CHECK(drain(peer) == ", world");
  close_on_loop(*l, *s);
  CHECK(s->try_write_now("late").what == write_status::closed);
  CHECK(drain(peer).empty());
}

TEST_CASE("try_write_now into a full pipe writes what fits, then leaves the rest to the loop's next batch") {
  auto l = start_checked();
  auto p = make_pipe();
  REQUIRE(::fcntl(p.b.get(), F_SETPIPE_SZ, 4096) >= 4096);
  REQUIRE(::fcntl(p.b.get(), F_GETPIPE_SZ) == 4096);
  int reader = p.a.get();
  recorder events;
  auto s = duplex_stream::create(l, unique_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)),
                                 std::move(p.b), &events);
  pattern pat(11);
  // Exactly full, then full: nothing written, nothing owed.
  auto r = s->try_write_now(std::string_view(pat.at(0), 4096));
  CHECK(r.what == write_status::wrote);
  CHECK(r.written == 4096);
  r = s->try_write_now(std::string_view(pat.at(4096), 1));
  CHECK(r.what == write_status::full);
  CHECK(r.written == 0);
  std::string got = drain(reader);
  REQUIRE(got.size() == 4096);
  // More than fits: a prefix goes, and the rest is owed to the loop's next batch.
  constexpr std::size_t big = 10000;
  r = s->try_write_now(std::string_view(pat.at(4096), big));
  REQUIRE(r.what == write_status::wrote);
  CHECK(r.written > 0);
  CHECK(r.written < big);
  std::size_t sent = 4096 + r.written;
  got += drain(reader);  // room again, but the rest must go first
  CHECK(s->try_write_now("x").what == write_status::busy);
  std::string rest(pat.at(sent), 4096 + big - sent);
  on_loop(*l, [&] {
    s->write({{rest.data(), rest.size()}});
    return 0;
  });
  while (got.size() < 4096 + big) {
    pollfd pfd{reader, POLLIN, 0};
    REQUIRE(::poll(&pfd, 1, 10'000) == 1);
    got += drain(reader);
  }
  REQUIRE(events.wait([](recorder& e) { return !e.write_dones_.empty(); }));
  CHECK(events.write_dones_ == std::vector<int>{0});
  // The batch carried the rest: direct writes go again.
  r = s->try_write_now(std::string_view(pat.at(4096 + big), 100));
  CHECK(r.what == write_status::wrote);
  got += drain(reader);
  CHECK(got.size() == 4096 + big + 100);
  CHECK(pat.matches(0, got));
  close_on_loop(*l, *s);
}

TEST_CASE("try_write_now writes nothing while a batch is in flight, so the batch arrives whole") {
  auto l = start_checked();
  auto p = make_pipe();
  const int pipe_size = ::fcntl(p.b.get(), F_SETPIPE_SZ, 4096);
  REQUIRE(pipe_size >= 4096);
  int reader = p.a.get();
  recorder events;
  auto s = duplex_stream::create(l, unique_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)),
                                 std::move(p.b), &events);
  pattern pat(5);
  constexpr std::size_t total = 256u << 10;
  on_loop(*l, [&] {
    s->write({{const_cast<char*>(pat.at(0)), total}});
    return 0;
  });
  // The pipe holds 4 KiB: the batch cannot end before the reader reads, and meanwhile
  // every direct write is refused.
  for (int i = 0; i < 100; ++i) CHECK(s->try_write_now("!").what == write_status::busy);
  std::string got;
  while (got.size() < total) {
    pollfd pfd{reader, POLLIN, 0};
    REQUIRE(::poll(&pfd, 1, 10'000) == 1);
    got += drain(reader, total - got.size());
    // While more is unread than the pipe holds, some of the batch is not written yet, so
    // it is surely in flight. (Once the rest fits in the pipe the batch may have ended
    // with bytes still unread, and a direct write may then rightly go or find it full.)
    if (total - got.size() > std::size_t(pipe_size))
      CHECK(s->try_write_now("!").what == write_status::busy);
  }
  REQUIRE(events.wait([](recorder& e) { return !e.write_dones_.empty(); }));
  auto r = s->try_write_now(std::string_view(pat.at(total), 10));
  CHECK(r.what == write_status::wrote);
  got += drain(reader);
  CHECK(got.size() == total + 10);
  CHECK(pat.matches(0, got));
  close_on_loop(*l, *s);
}

TEST_CASE("try_write_now to a pipe with no reader fails with EPIPE and raises no SIGPIPE, on any thread") {
  default_sigpipe dfl;  // a SIGPIPE would end this test program
  auto l = start_checked();
  auto p = make_pipe();
  p.a.reset();
  recorder events;
  auto s = duplex_stream::create(l, unique_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)),
                                 std::move(p.b), &events);
  // A thread with SIGPIPE unblocked: its mask is as it was after, nothing pending.
  REQUIRE_FALSE(sigpipe_blocked_here());
  for (int i = 0; i < 3; ++i) {
    auto r = s->try_write_now("doomed");
    CHECK(r.what == write_status::failed);
    CHECK(r.error == -EPIPE);
    CHECK(r.written == 0);
  }
  CHECK_FALSE(sigpipe_blocked_here());
  CHECK_FALSE(sigpipe_pending_here());
  // The loop thread (which blocks SIGPIPE): nothing left pending there either.
  auto [r, pending] = on_loop(*l, [&] {
    auto w = s->try_write_now("doomed");
    return std::pair(w, sigpipe_pending_here());
  });
  CHECK(r.what == write_status::failed);
  CHECK(r.error == -EPIPE);
  CHECK_FALSE(pending);
  close_on_loop(*l, *s);
}

TEST_CASE("try_write_now to a socket whose peer is gone fails and raises no SIGPIPE") {
  default_sigpipe dfl;
  auto l = start_checked();
  auto sp = make_socketpair();
  sp.b.reset();
  recorder events;
  auto s = duplex_stream::create(l, std::move(sp.a), unique_fd(), &events);
  auto r = s->try_write_now("doomed");
  CHECK(r.what == write_status::failed);
  CHECK((r.error == -EPIPE || r.error == -ECONNRESET));
  CHECK_FALSE(sigpipe_pending_here());
  close_on_loop(*l, *s);
}

TEST_CASE("threads writing at once while the loop ends the write half: every byte said written arrives, records whole, none after") {
  auto l = start_checked();
  enum class ending { shutdown_write, close };
  for (ending how : {ending::shutdown_write, ending::close}) {
    for (bool socket : {true, false}) {
      CAPTURE(socket);
      CAPTURE(how == ending::close);
      recorder events;
      std::shared_ptr<duplex_stream> s;
      unique_fd peer;
      fd_pair keep;
      if (socket) {
        auto sp = make_socketpair();
        peer = std::move(sp.b);
        s = duplex_stream::create(l, std::move(sp.a), unique_fd(), &events);
      } else {
        auto in = make_pipe(), out = make_pipe();
        peer = std::move(out.a);
        keep.a = std::move(in.b);
        s = duplex_stream::create(l, std::move(in.a), std::move(out.b), &events);
      }
      // Records of 32 bytes: "T<thread>:<seq, 8 digits>" padded with the thread's letter.
      constexpr int writers = 4;
      constexpr int max_attempts = 200000;
      auto record = [](int t, int seq) {
        char head[16];
        std::snprintf(head, sizeof head, "T%d:%08d", t, seq);
        std::string r(head);
        r.resize(32, static_cast<char>('a' + t));
        return r;
      };
      std::atomic<int> attempts{0};
      std::atomic<std::size_t> written{0};
      std::atomic<int> wrote_after_closed{0};
      auto reading = std::async(std::launch::async, [&] { return read_to_end(peer.get()); });
      std::vector<std::thread> threads;
      for (int t = 0; t < writers; ++t) {
        threads.emplace_back([&, t] {
          int seq = 0;
          auto give_up = std::chrono::steady_clock::now() + patience;
          for (int i = 0; i < max_attempts && std::chrono::steady_clock::now() < give_up; ++i) {
            ++attempts;
            std::string rec = record(t, seq);
            auto r = s->try_write_now(rec);
            written += r.written;
            if (r.what == write_status::wrote && r.written == rec.size()) ++seq;
            if (r.what == write_status::closed) {
              // Once closed, closed for good.
              for (int k = 0; k < 10; ++k)
                if (s->try_write_now(rec).what != write_status::closed) ++wrote_after_closed;
              return;
            }
          }
        });
      }
      REQUIRE(bokbok_test::settles([&] { return attempts >= 2000; }));
      on_loop(*l, [&] {
        if (how == ending::close)
          s->close();
        else
          s->shutdown_write();
        return 0;
      });
      // From here on nothing more is written, from any thread.
      CHECK(s->try_write_now("late").what == write_status::closed);
      for (auto& t : threads) t.join();
      REQUIRE(reading.wait_for(patience) == std::future_status::ready);
      std::string got = reading.get();
      CHECK(wrote_after_closed == 0);
      CHECK(got.size() == written.load());
      CHECK(written > 0);
      // Whole records, each thread's in order; only the very last may be cut short
      // (a partial write whose rest was owed to a batch that never came).
      std::vector<int> next(writers, 0);
      bool intact = true;
      for (std::size_t off = 0; off < got.size() && intact; off += 32) {
        std::string_view rec = std::string_view(got).substr(off, 32);
        int t = rec.size() > 1 ? rec[1] - '0' : -1;
        if (t < 0 || t >= writers) {
          intact = false;
          break;
        }
        std::string want = record(t, next[t]);
        if (rec.size() < 32) {
          intact = want.compare(0, rec.size(), rec) == 0;
        } else {
          intact = rec == want;
          ++next[t];
        }
      }
      CHECK(intact);
      if (how == ending::shutdown_write) close_on_loop(*l, *s);
    }
  }
}

TEST_CASE("no direct write lands in a file that took the closed stream's descriptor number") {
  auto l = start_checked();
  for (int round = 0; round < 20; ++round) {
    CAPTURE(round);
    auto p = make_pipe();
    auto other = make_pipe();  // the file that will take the number
    int old_number = p.b.get();
    recorder events;
    auto s = duplex_stream::create(l, unique_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)),
                                   std::move(p.b), &events);
    std::atomic<int> wrote{0};
    std::atomic<bool> go{true};
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
      threads.emplace_back([&] {
        auto give_up = std::chrono::steady_clock::now() + patience;
        while (go && std::chrono::steady_clock::now() < give_up) {
          auto r = s->try_write_now("x");
          if (r.what == write_status::wrote) ++wrote;
        }
      });
    }
    REQUIRE(bokbok_test::settles([&] { return wrote >= 30; }));
    // Close, and at once give the number to another pipe's write end, as an open() or
    // accept() elsewhere in the process could.
    bool reused = on_loop(*l, [&] {
      s->close();
      bool fd_closed = !fd_open(old_number);
      return fd_closed && ::dup2(other.b.get(), old_number) == old_number;
    });
    REQUIRE(reused);
    // The writers go on for a while against the closed stream.
    int not_closed = 0;
    for (int i = 0; i < 1000; ++i)
      if (s->try_write_now("y").what != write_status::closed) ++not_closed;
    CHECK(not_closed == 0);
    go = false;
    for (auto& t : threads) t.join();
    CHECK(drain(other.a.get()).empty());
    ::close(old_number);
  }
}

TEST_CASE("a bulk stream keeps its grown read buffer across the short read that ends each transfer") {
  auto l = start_checked();
  auto sp = make_socketpair();
  const int writer = sp.b.get();
  recorder events;
  auto s = duplex_stream::create(l, std::move(sp.a), unique_fd(), &events);
  auto buffer = [&] { return on_loop(*l, [&] { return s->read_buffer_size(); }); };
  on_loop(*l, [&] {
    s->start_reading();
    return 0;
  });
  std::size_t sent = 0;
  auto send = [&](std::size_t n) {
    std::string bytes(n, 'b');
    std::size_t off = 0;
    while (off < n) {
      ssize_t w = ::write(writer, bytes.data() + off, n - off);
      if (w < 0 && errno == EINTR) continue;
      REQUIRE(w > 0);
      off += static_cast<std::size_t>(w);
    }
    sent += n;
    REQUIRE(events.wait([&](recorder& r) { return r.received_ == sent; }));
  };
  constexpr std::size_t largest = 256 * 1024;
  // 1 MiB transfers fill the reads: the buffer grows to its largest (bounded tries).
  for (int i = 0; i < 64 && buffer() < largest; ++i) send(1 << 20);
  REQUIRE(buffer() == largest);
  // The short read that ends a transfer, then the next transfer: one buffer throughout.
  for (int round = 0; round < 3; ++round) {
    send(100);
    CHECK(buffer() == largest);
    send(1 << 20);
  }
  // Short reads in a row: the traffic changed; the buffer is given back step by step.
  for (int i = 0; i < 8; ++i) send(100);
  CHECK(buffer() < largest);
  on_loop(*l, [&] {
    s->close();
    return 0;
  });
}
