// The one duplex_stream: a read half that keeps one read in flight into a buffer that
// adapts to the traffic (4 KiB while reads are small, doubling up to 256 KiB while they
// fill it, halving again when they shrink), and a write half that carries one batch of
// iovecs to the end. An idle connection thus holds 4 KiB of read buffer, not 256 KiB.
//
// Lifetime: each operation in flight holds a shared_ptr to the stream (in its completion
// object), so the stream, its buffer and its fds outlive the kernel's use of them; the
// fds are closed only when close() was called and every completion has arrived (or when
// the stream is destroyed, which cannot happen while something is in flight).
#include "io/duplex_stream.hpp"

#include "base/is_socket.hpp"

#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <system_error>

namespace bokbok::io {
namespace {

constexpr std::size_t min_read_buffer = 4 * 1024;
constexpr std::size_t read_buffer_size = 256 * 1024;  // the most it grows to
constexpr std::size_t max_iov_per_write = IOV_MAX;
static_assert(read_buffer_size <= INT_MAX);

[[noreturn]] void fail(int err, const char* what) {
  throw std::system_error(err, std::system_category(), what);
}

void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) fail(errno, "fcntl(F_GETFL)");
  if ((flags & O_NONBLOCK) == 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
    fail(errno, "fcntl(F_SETFL, O_NONBLOCK)");
}

class stream_impl final : public duplex_stream,
                          public std::enable_shared_from_this<stream_impl> {
 public:
  stream_impl(std::shared_ptr<loop> l, base::unique_fd in, base::unique_fd out, stream_events* events)
      : loop_(std::move(l)),
        in_(std::move(in)),
        out_(std::move(out)),
        same_fd_(!out_),
        in_is_socket_(base::is_socket(in_.get())),
        out_is_socket_(out_ ? base::is_socket(out_.get()) : in_is_socket_),
        events_(events),

        read_op_(*this, &stream_impl::on_read),
        write_op_(*this, &stream_impl::on_written) {}
  // Without close(): on the loop thread the loop forgets the fds before they close;
  // elsewhere it cannot be told, and re-registers a reused number when it finds the
  // registration gone (see epoll_loop.hpp).
  ~stream_impl() override {
    if (!loop_->in_loop_thread()) return;
    if (out_) loop_->forget(out_.get());
    if (in_) loop_->forget(in_.get());
  }

  void start_reading() override;
  void stop_reading() override { reading_ = false; }
  void write(std::vector<iovec> iov, std::shared_ptr<const void> keep_alive) override;
  bool writing() const override { return writing_; }
  void shutdown_write() override;
  void close() override;
  loop& owner() const override { return *loop_; }

 private:
  // The completion of one kind of operation; holds the stream while in flight.
  class op final : public completion {
   public:
    op(stream_impl& s, void (stream_impl::*on_done)(int)) : stream_(s), on_done_(on_done) {}
    void arm(std::shared_ptr<stream_impl> self) { keep_ = std::move(self); }
    bool in_flight() const noexcept { return keep_ != nullptr; }
    void complete(int result, std::uint32_t) override {
      // The stream may die when `self` goes, at the end of this call; nothing touches
      // `this` after the handler.
      std::shared_ptr<stream_impl> self = std::move(keep_);
      (stream_.*on_done_)(result);
    }

   private:
    stream_impl& stream_;
    void (stream_impl::*on_done_)(int);
    std::shared_ptr<stream_impl> keep_;
  };

  int out_fd() const noexcept { return same_fd_ ? in_.get() : out_.get(); }
  void submit_read();
  void on_read(int res);
  void deliver(int res);
  void resume_held();
  void submit_write();
  void on_written(int res);
  void finish_write(int err);
  void post_write_done(int err);
  void end_write_half();
  void release_if_idle();

  std::shared_ptr<loop> loop_;
  base::unique_fd in_;
  base::unique_fd out_;  // empty when same_fd_, or once a pipe's write half was closed
  bool same_fd_;   // `in_` is written too
  bool in_is_socket_;
  bool out_is_socket_;
  stream_events* events_;
  std::unique_ptr<char[]> buffer_;  // allocated for the first read
  std::size_t buffer_size_ = 0;
  std::size_t want_size_ = min_read_buffer;  // for the next read
  op read_op_;
  op write_op_;

  bool closed_ = false;
  // Read half.
  bool reading_ = false;     // the user wants data
  bool read_ended_ = false;  // on_read_end delivered or held
  bool delivering_ = false;  // inside on_data: buffer_ must not be refilled yet
  bool resume_posted_ = false;
  std::optional<int> held_;  // a result that arrived while stopped
  // Write half.
  bool writing_ = false;  // a batch is active (until on_write_done)
  bool shut_requested_ = false;
  bool write_shut_ = false;
  std::vector<iovec> iov_;
  std::size_t iov_pos_ = 0;  // first iovec not completely written
  std::shared_ptr<const void> keep_alive_;
};

void stream_impl::start_reading() {
  if (closed_ || read_ended_) return;
  reading_ = true;
  if (held_) {
    if (!resume_posted_) {
      resume_posted_ = true;
      loop_->post([self = shared_from_this()] { self->resume_held(); });
    }
    return;
  }
  if (!read_op_.in_flight() && !delivering_) submit_read();
}

void stream_impl::submit_read() {
  if (buffer_size_ != want_size_) {  // no read in flight, nothing being delivered
    buffer_ = std::make_unique_for_overwrite<char[]>(want_size_);
    buffer_size_ = want_size_;
  }
  read_op_.arm(shared_from_this());
  loop_->submit_read(in_.get(), buffer_.get(), buffer_size_, &read_op_);
}

void stream_impl::on_read(int res) {
  if (closed_) return release_if_idle();
  if (res == -EINTR) {
    if (reading_) submit_read();
    return;
  }
  if (!reading_) {
    held_ = res;  // stop_reading() came while the read was in flight
    return;
  }
  deliver(res);
}

void stream_impl::resume_held() {
  resume_posted_ = false;
  if (closed_ || !reading_ || !held_) return;
  int res = *held_;
  held_.reset();
  deliver(res);
}

void stream_impl::deliver(int res) {
  if (res <= 0) {
    read_ended_ = true;
    reading_ = false;
    events_->on_read_end(res);
    return;
  }
  const auto n = static_cast<std::size_t>(res);
  // Grow while reads fill the buffer (a bulk transfer), shrink when they use little.
  if (n == buffer_size_ && want_size_ < read_buffer_size)
    want_size_ = buffer_size_ * 2;
  else if (n < buffer_size_ / 8 && want_size_ > min_read_buffer)
    want_size_ = buffer_size_ / 2;
  delivering_ = true;
  events_->on_data(std::string_view(buffer_.get(), n));
  delivering_ = false;
  if (!closed_ && reading_ && !read_op_.in_flight()) submit_read();
}

void stream_impl::write(std::vector<iovec> iov, std::shared_ptr<const void> keep_alive) {
  if (closed_) return;
  if (writing_) throw std::logic_error("duplex_stream::write: a batch is already in flight");
  writing_ = true;
  if (shut_requested_) return post_write_done(-EPIPE);
  std::erase_if(iov, [](const iovec& v) { return v.iov_len == 0; });
  if (iov.empty()) return post_write_done(0);
  iov_ = std::move(iov);
  iov_pos_ = 0;
  keep_alive_ = std::move(keep_alive);
  submit_write();
}

void stream_impl::submit_write() {
  write_op_.arm(shared_from_this());
  std::size_t n = std::min(iov_.size() - iov_pos_, max_iov_per_write);
  loop_->submit_writev(out_fd(), out_is_socket_, &iov_[iov_pos_], static_cast<int>(n),
                       &write_op_);
}

void stream_impl::on_written(int res) {
  if (closed_) return release_if_idle();
  if (res == -EINTR) return submit_write();
  if (res <= 0) return finish_write(res == 0 ? -EIO : res);  // 0: no progress, stop
  auto left = static_cast<std::size_t>(res);
  while (iov_pos_ < iov_.size() && left >= iov_[iov_pos_].iov_len) {
    left -= iov_[iov_pos_].iov_len;
    ++iov_pos_;
  }
  if (iov_pos_ == iov_.size()) return finish_write(0);
  iovec& v = iov_[iov_pos_];
  v.iov_base = static_cast<char*>(v.iov_base) + left;
  v.iov_len -= left;
  submit_write();
}

void stream_impl::finish_write(int err) {
  writing_ = false;
  iov_.clear();
  keep_alive_.reset();
  if (shut_requested_) end_write_half();
  events_->on_write_done(err);
}

void stream_impl::post_write_done(int err) {
  loop_->post([self = shared_from_this(), err] {
    if (self->closed_) return;
    self->writing_ = false;
    self->events_->on_write_done(err);
  });
}

void stream_impl::shutdown_write() {
  if (closed_ || shut_requested_) return;
  shut_requested_ = true;
  if (!writing_) end_write_half();
}

void stream_impl::end_write_half() {
  if (write_shut_) return;
  write_shut_ = true;
  if (out_is_socket_) {
    ::shutdown(out_fd(), SHUT_WR);
  } else if (same_fd_) {
    // One non-socket fd for both halves cannot be half-closed.
  } else if (out_.borrowed()) {
    loop_->forget(out_.get());  // the number will hold another file
    base::unique_fd null(::open("/dev/null", O_WRONLY | O_CLOEXEC));
    if (null) ::dup2(null.get(), out_.get());
  } else {
    loop_->forget(out_.get());
    out_.reset();
  }
}

void stream_impl::close() {
  if (closed_) return;
  closed_ = true;
  reading_ = false;
  held_.reset();
  if (read_op_.in_flight()) loop_->cancel(&read_op_);
  if (write_op_.in_flight()) loop_->cancel(&write_op_);
  release_if_idle();
}

void stream_impl::release_if_idle() {
  if (read_op_.in_flight() || write_op_.in_flight()) return;
  iov_.clear();
  keep_alive_.reset();
  // The loop lets go of the numbers before they are closed (and may be reused).
  if (out_) loop_->forget(out_.get());
  if (in_) loop_->forget(in_.get());
  out_.reset();
  in_.reset();
}

}  // namespace

std::shared_ptr<duplex_stream> duplex_stream::create(std::shared_ptr<loop> l, base::unique_fd in,
                                                     base::unique_fd out, stream_events* events) {
  if (!l) throw std::invalid_argument("duplex_stream::create: no loop");
  if (!in) throw std::invalid_argument("duplex_stream::create: no input fd");
  if (out && out.get() == in.get()) {
    bool borrowed = in.borrowed() || out.borrowed();
    int fd = in.release();
    out.release();
    in = borrowed ? base::unique_fd::borrow(fd) : base::unique_fd(fd);
  }
  set_nonblocking(in.get());
  if (out) set_nonblocking(out.get());
  return std::make_shared<stream_impl>(std::move(l), std::move(in), std::move(out), events);
}

}  // namespace bokbok::io
