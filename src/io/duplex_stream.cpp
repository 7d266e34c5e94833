// The one duplex_stream: a read half that keeps one read in flight into a buffer that
// adapts to the traffic, and a write half that carries one batch of iovecs to the end.
// While reads are small (4 KiB at most) they go into a buffer the loop lends for the
// moment the bytes are delivered (loop::submit_read_lent), so a stream waiting for data
// holds no read buffer at all; while reads fill it, the stream reads into a buffer of
// its own, doubling up to 256 KiB, and halves it again after shrink_after reads in a
// row used little of it, back to lent buffers. A stream of large messages thus keeps
// one buffer, and an idle connection none. (Where the loop cannot lend, or has no
// buffer free at the moment, the small reads use a 4 KiB buffer of the stream's own.)
//
// Lifetime: each operation in flight holds a shared_ptr to the stream (in its completion
// object), so the stream, its buffer and its fds outlive the kernel's use of them; the
// fds are closed only when close() was called and every completion has arrived (or when
// the stream is destroyed, which cannot happen while something is in flight).
//
// The writer's shortcut (try_write_now, any thread) shares three fields with the loop
// thread under `direct_mu_`: the out fd while it may be written, whether a batch is in
// flight, and whether the rest of a partial direct write is owed. The loop sets them
// at write(), at the end of each batch, at shutdown_write() and close(); a direct writer
// holds the mutex across its one non-blocking system call, so a loop-side change that
// stops direct writes (shut down, close, a new batch) waits for that call to end, and
// what follows on the loop thread (closing the fd, the batch) comes after its bytes.
#include "io/duplex_stream.hpp"

#include "base/is_socket.hpp"
#include "io/write_now.hpp"

#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>

namespace bokbok::io {
namespace {

constexpr std::size_t min_read_buffer = 4 * 1024;
constexpr std::size_t max_read_buffer = 256 * 1024;  // the most it grows to
constexpr std::size_t max_iov_per_write = IOV_MAX;
static_assert(min_read_buffer == lent_buffer_size, "small reads are lent reads");
// Short reads in a row (each under an eighth of the buffer) before it halves: one short
// read ends every large message and must not cost a reallocation.
constexpr unsigned shrink_after = 4;
static_assert(max_read_buffer <= INT_MAX);
// Control buffers: one SCM_RIGHTS of the most fds a sendmsg carries (the kernel never
// joins two writes' fds in one read), plus room for credentials should the application
// have set SO_PASSCRED.
constexpr std::size_t send_control_size = CMSG_SPACE(max_fds_per_write * sizeof(int));
constexpr std::size_t recv_control_size = send_control_size + CMSG_SPACE(sizeof(ucred));

// After a recvmsg: the fds its control messages carry, each owned.
std::vector<base::unique_fd> received_fds(const msghdr& msg) {
  std::vector<base::unique_fd> fds;
  if (msg.msg_controllen == 0) return fds;
  for (const cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&msg), const_cast<cmsghdr*>(c))) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(c);
    for (std::size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, data + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  return fds;
}

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
  // `in_kind`, `out_kind`: what the descriptors are (out_kind unused when `out` is empty).
  stream_impl(std::shared_ptr<loop> l, base::unique_fd in, base::unique_fd out,
              base::fd_kind in_kind, base::fd_kind out_kind, stream_events* events)
      : loop_(std::move(l)),
        in_(std::move(in)),
        out_(std::move(out)),
        same_fd_(!out_),
        in_is_socket_(in_kind.socket),
        out_is_socket_(out_ ? out_kind.socket : in_is_socket_),
        in_is_unix_(in_is_socket_ && in_kind.family == AF_UNIX),
        passes_fds_(in_is_unix_ && (same_fd_ || (out_is_socket_ && out_kind.family == AF_UNIX))),
        events_(events),
        direct_fd_(out_fd()),
        read_op_(*this, &stream_impl::on_read),
        write_op_(*this, &stream_impl::on_written) {}
  // Without close(): on the loop thread the loop forgets the fds before they close;
  // elsewhere it cannot be told, and re-registers a reused number when it finds the
  // registration gone (see epoll_backend.hpp).
  ~stream_impl() override {
    if (!loop_->in_loop_thread()) return;
    if (out_) loop_->forget(out_.get());
    if (in_) loop_->forget(in_.get());
  }

  void start_reading() override;
  void stop_reading() override { reading_ = false; }
  void write(std::vector<iovec> iov, std::shared_ptr<const void> keep_alive) override;
  bool writing() const override { return writing_; }
  bool can_pass_fds() const override { return passes_fds_; }
  void write_with_fds(std::vector<iovec> iov, std::vector<fd_attachment> fds,
                      std::shared_ptr<const void> keep_alive) override;
  try_write_result try_write_now(std::string_view bytes) noexcept override;
  void shutdown_write() override;
  void close() override;
  loop& owner() const override { return *loop_; }
  std::size_t read_buffer_size() const override { return buffer_size_ ? buffer_size_ : want_size_; }

 private:
  // The completion of one kind of operation; holds the stream while in flight.
  class op final : public completion {
   public:
    op(stream_impl& s, void (stream_impl::*on_done)(int, std::uint32_t))
        : stream_(s), on_done_(on_done) {}
    void arm(std::shared_ptr<stream_impl> self) { keep_ = std::move(self); }
    bool in_flight() const noexcept { return keep_ != nullptr; }
    void complete(int result, std::uint32_t flags) override {
      // The stream may die when `self` goes, at the end of this call; nothing touches
      // `this` after the handler.
      std::shared_ptr<stream_impl> self = std::move(keep_);
      (stream_.*on_done_)(result, flags);
    }

   private:
    stream_impl& stream_;
    void (stream_impl::*on_done_)(int, std::uint32_t);
    std::shared_ptr<stream_impl> keep_;
  };

  int out_fd() const noexcept { return same_fd_ ? in_.get() : out_.get(); }
  void submit_read();
  void on_read(int res, std::uint32_t flags);
  void deliver(int res, const char* data, std::size_t capacity);
  void resume_held();
  void submit_write();
  void submit_send_with_fds();
  void check_attachments(const std::vector<iovec>& iov,
                         const std::vector<fd_attachment>& fds) const;
  void on_written(int res, std::uint32_t flags);
  void finish_write(int err);
  void post_write_done(int err);
  void end_write_half();
  void release_if_idle();
  void set_batch_in_flight(bool on);
  void stop_direct_writes();

  const std::shared_ptr<loop> loop_;
  base::unique_fd in_;
  base::unique_fd out_;  // empty when same_fd_, or once a pipe's write half was closed
  const bool same_fd_;   // `in_` is written too
  const bool in_is_socket_;
  const bool out_is_socket_;
  const bool in_is_unix_;  // reads are recvmsg, and may bring fds
  const bool passes_fds_;  // can_pass_fds()
  stream_events* events_;
  // The writer's shortcut (see the top of this file): any thread, under direct_mu_.
  std::mutex direct_mu_;
  int direct_fd_;  // the out fd while it may be written; -1 from shutdown_write() or close()
  bool batch_in_flight_ = false;  // from write() until just before on_write_done
  bool direct_owed_ = false;      // a partial direct write's rest must go first
  // direct_fd_ is -1 for good: read without the mutex, so that "closed" is the answer
  // even while other writers hold it.
  std::atomic<bool> direct_ended_{false};
  std::unique_ptr<char[]> buffer_;  // the stream's own: none while reads are lent
  std::size_t buffer_size_ = 0;
  bool lent_read_ = false;    // the read in flight reads into a lent buffer
  bool lend_refused_ = false;  // the last lent read found none free: read into buffer_
  std::size_t want_size_ = min_read_buffer;  // for the next read
  unsigned short_reads_ = 0;                 // in a row, each under an eighth
  op read_op_;
  op write_op_;

  bool closed_ = false;
  // Read half.
  bool reading_ = false;     // the user wants data
  bool read_ended_ = false;  // on_read_end delivered or held
  bool delivering_ = false;  // inside on_data: buffer_ must not be refilled yet
  bool resume_posted_ = false;
  std::optional<int> held_;  // a result that arrived while stopped
  std::vector<base::unique_fd> fds_in_;  // received, for the next on_fds
  msghdr read_msg_{};                    // in_is_unix_: the recvmsg in flight
  iovec read_iov_{};
  std::unique_ptr<unsigned char[]> read_control_;  // recv_control_size, aligned by new
  // Write half.
  bool writing_ = false;  // a batch is active (until on_write_done)
  bool shut_requested_ = false;
  bool write_shut_ = false;
  std::vector<iovec> iov_;
  std::size_t iov_pos_ = 0;  // first iovec not completely written
  std::shared_ptr<const void> keep_alive_;
  // Write half with fds (write_with_fds): the attachments not yet sent, how many bytes
  // of the batch went, and the sendmsg in flight (its iovecs and control message).
  std::vector<fd_attachment> attach_;
  std::size_t attach_pos_ = 0;
  std::size_t batch_sent_ = 0;
  bool carrying_ = false;  // the sendmsg in flight carries attach_[attach_pos_]
  msghdr send_msg_{};
  std::vector<iovec> send_iov_;
  std::unique_ptr<unsigned char[]> send_control_;  // send_control_size
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

// No read in flight, nothing being delivered (buffer_ is free to change).
void stream_impl::submit_read() {
  const bool lend = want_size_ == min_read_buffer && loop_->lends() &&
                    !std::exchange(lend_refused_, false);
  if (lend) {
    buffer_.reset();  // the traffic went back to small reads, or never left them
    buffer_size_ = 0;
  } else if (buffer_size_ != want_size_) {
    buffer_ = std::make_unique_for_overwrite<char[]>(want_size_);
    buffer_size_ = want_size_;
  }
  lent_read_ = lend;
  read_op_.arm(shared_from_this());
  if (!in_is_unix_) {
    if (lend) return loop_->submit_read_lent(in_.get(), nullptr, &read_op_);
    return loop_->submit_read(in_.get(), buffer_.get(), buffer_size_, &read_op_);
  }
  if (!read_control_) read_control_ = std::make_unique<unsigned char[]>(recv_control_size);
  read_iov_ = lend ? iovec{nullptr, min_read_buffer} : iovec{buffer_.get(), buffer_size_};
  read_msg_ = msghdr{};
  read_msg_.msg_iov = &read_iov_;
  read_msg_.msg_iovlen = 1;
  read_msg_.msg_control = read_control_.get();
  read_msg_.msg_controllen = recv_control_size;
  if (lend) return loop_->submit_read_lent(in_.get(), &read_msg_, &read_op_);
  loop_->submit_recvmsg(in_.get(), &read_msg_, &read_op_);
}

void stream_impl::on_read(int res, std::uint32_t flags) {
  // The bytes of a lent read are at `lent` until this returns.
  const char* lent = (flags & lent_buffer_flag) ? loop_->lent_data(flags) : nullptr;
  const bool was_lent = std::exchange(lent_read_, false);
  if (was_lent && res > 0 && !lent) res = -EIO;  // bytes nowhere: never from a sound kernel
  if (in_is_unix_ && res >= 0) {
    // Owned at once, so that they are closed whatever happens next.
    std::vector<base::unique_fd> fds = received_fds(read_msg_);
    if (read_msg_.msg_flags & MSG_CTRUNC) {
      res = -EMSGSIZE;  // fds were lost: the stream cannot be trusted any more
    } else {
      for (auto& fd : fds) fds_in_.push_back(std::move(fd));
    }
  }
  if (closed_) {
    fds_in_.clear();
    return release_if_idle();
  }
  if (res == -EINTR || (was_lent && res == -ENOBUFS)) {
    lend_refused_ = res == -ENOBUFS;  // none free: this once, a buffer of our own
    if (reading_) submit_read();
    return;
  }
  if (!reading_) {
    // stop_reading() came while the read was in flight: held until start_reading(),
    // the bytes of a lent read in a buffer of our own (the loop takes its back).
    if (lent && res > 0) {
      buffer_ = std::make_unique_for_overwrite<char[]>(min_read_buffer);
      buffer_size_ = min_read_buffer;
      std::memcpy(buffer_.get(), lent, static_cast<std::size_t>(res));
    }
    held_ = res;
    return;
  }
  if (lent) return deliver(res, lent, lent_buffer_size);
  deliver(res, buffer_.get(), buffer_size_);
}

void stream_impl::resume_held() {
  resume_posted_ = false;
  if (closed_ || !reading_ || !held_) return;
  int res = *held_;
  held_.reset();
  deliver(res, buffer_.get(), buffer_size_);
}

// `res` bytes (or the end) at `data`, read into a buffer of `capacity` bytes.
void stream_impl::deliver(int res, const char* data, std::size_t capacity) {
  if (res <= 0) {
    read_ended_ = true;
    reading_ = false;
    fds_in_.clear();
    events_->on_read_end(res);
    return;
  }
  const auto n = static_cast<std::size_t>(res);
  // Grow while reads fill the buffer (a bulk transfer); shrink once reads have used
  // little of it several times in a row (the traffic changed).
  if (n >= capacity / 8) {
    short_reads_ = 0;
    if (n == capacity && want_size_ < max_read_buffer) want_size_ = capacity * 2;
  } else if (++short_reads_ >= shrink_after && want_size_ > min_read_buffer) {
    short_reads_ = 0;
    want_size_ = capacity / 2;
  }
  delivering_ = true;
  if (!fds_in_.empty()) {
    events_->on_fds(std::exchange(fds_in_, {}));
    if (closed_) {
      delivering_ = false;
      return;
    }
  }
  events_->on_data(std::string_view(data, n));
  delivering_ = false;
  if (!closed_ && reading_ && !read_op_.in_flight()) submit_read();
}

void stream_impl::write(std::vector<iovec> iov, std::shared_ptr<const void> keep_alive) {
  if (closed_) return;
  if (writing_) throw std::logic_error("duplex_stream::write: a batch is already in flight");
  writing_ = true;
  set_batch_in_flight(true);
  if (shut_requested_) return post_write_done(-EPIPE);
  std::erase_if(iov, [](const iovec& v) { return v.iov_len == 0; });
  if (iov.empty()) return post_write_done(0);
  iov_ = std::move(iov);
  iov_pos_ = 0;
  keep_alive_ = std::move(keep_alive);
  submit_write();
}

void stream_impl::check_attachments(const std::vector<iovec>& iov,
                                    const std::vector<fd_attachment>& fds) const {
  if (!passes_fds_)
    throw std::system_error(EOPNOTSUPP, std::system_category(),
                            "duplex_stream: this stream cannot carry file descriptors (only an "
                            "AF_UNIX socket can)");
  std::size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  std::size_t next_offset = 0;  // the least offset the next attachment may have
  for (const fd_attachment& a : fds) {
    if (a.fds.empty()) throw std::invalid_argument("duplex_stream: an fd attachment without fds");
    if (a.fds.size() > max_fds_per_write)
      throw std::invalid_argument("duplex_stream: more than 253 fds (SCM_MAX_FD) in one write");
    if (a.offset < next_offset || a.offset >= total)
      throw std::invalid_argument(
          "duplex_stream: fd attachments must be in increasing order, each at a byte of the batch");
    for (const base::unique_fd& fd : a.fds)
      if (!fd) throw std::invalid_argument("duplex_stream: a closed fd in an fd attachment");
    next_offset = a.offset + 1;
  }
}

void stream_impl::write_with_fds(std::vector<iovec> iov, std::vector<fd_attachment> fds,
                                 std::shared_ptr<const void> keep_alive) {
  if (fds.empty()) return write(std::move(iov), std::move(keep_alive));
  check_attachments(iov, fds);
  if (closed_) return;  // as write(): nothing happens (the fds are closed)
  if (writing_) throw std::logic_error("duplex_stream::write: a batch is already in flight");
  attach_ = std::move(fds);
  attach_pos_ = 0;
  batch_sent_ = 0;
  write(std::move(iov), std::move(keep_alive));
}

// One sendmsg from where the batch stands, up to (not including) the next attachment's
// first byte; it carries the current attachment when the batch stands at its offset.
void stream_impl::submit_send_with_fds() {
  carrying_ = attach_pos_ < attach_.size() && attach_[attach_pos_].offset == batch_sent_;
  std::size_t next = attach_pos_ + (carrying_ ? 1 : 0);
  std::size_t limit = next < attach_.size() ? attach_[next].offset - batch_sent_ : SIZE_MAX;
  send_iov_.clear();
  for (std::size_t i = iov_pos_; i < iov_.size() && limit > 0 && send_iov_.size() < max_iov_per_write; ++i) {
    iovec v = iov_[i];
    v.iov_len = std::min(v.iov_len, limit);
    limit -= v.iov_len;
    send_iov_.push_back(v);
  }
  send_msg_ = msghdr{};
  send_msg_.msg_iov = send_iov_.data();
  send_msg_.msg_iovlen = send_iov_.size();
  if (carrying_) {
    const auto& fds = attach_[attach_pos_].fds;
    if (!send_control_) send_control_ = std::make_unique<unsigned char[]>(send_control_size);
    std::memset(send_control_.get(), 0, send_control_size);
    send_msg_.msg_control = send_control_.get();
    send_msg_.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&send_msg_);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    for (std::size_t i = 0; i < fds.size(); ++i) {
      int fd = fds[i].get();
      std::memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof fd);
    }
  }
  write_op_.arm(shared_from_this());
  loop_->submit_sendmsg(out_fd(), &send_msg_, &write_op_);
}

void stream_impl::submit_write() {
  if (!attach_.empty()) return submit_send_with_fds();
  write_op_.arm(shared_from_this());
  std::size_t n = std::min(iov_.size() - iov_pos_, max_iov_per_write);
  loop_->submit_writev(out_fd(), out_is_socket_, &iov_[iov_pos_], static_cast<int>(n),
                       &write_op_);
}

void stream_impl::on_written(int res, std::uint32_t) {
  if (closed_) return release_if_idle();
  if (res == -EINTR) return submit_write();
  if (res <= 0) return finish_write(res == 0 ? -EIO : res);  // 0: no progress, stop
  auto left = static_cast<std::size_t>(res);
  if (!attach_.empty()) {
    // The fds went with the first byte sent: our copies can go.
    if (carrying_) attach_[attach_pos_++].fds.clear();
    carrying_ = false;
    batch_sent_ += left;
  }
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
  set_batch_in_flight(false);
  iov_.clear();
  keep_alive_.reset();
  attach_.clear();  // sent, or failed: what is left is closed
  if (shut_requested_) end_write_half();
  events_->on_write_done(err);
}

void stream_impl::post_write_done(int err) {
  loop_->post([self = shared_from_this(), err] {
    if (self->closed_) return;
    self->writing_ = false;
    self->set_batch_in_flight(false);
    self->attach_.clear();
    self->events_->on_write_done(err);
  });
}

void stream_impl::shutdown_write() {
  if (closed_ || shut_requested_) return;
  shut_requested_ = true;
  stop_direct_writes();
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
  stop_direct_writes();
  reading_ = false;
  held_.reset();
  fds_in_.clear();
  if (read_op_.in_flight()) loop_->cancel(&read_op_);
  if (write_op_.in_flight()) loop_->cancel(&write_op_);
  release_if_idle();
}

// Loop thread. Waits for a try_write_now in its system call (see the top of this file).
void stream_impl::set_batch_in_flight(bool on) {
  std::lock_guard lock(direct_mu_);
  batch_in_flight_ = on;
  if (on) direct_owed_ = false;  // the batch carries the rest first (the caller's promise)
}

// Loop thread, at shutdown_write() or close(): after this returns no direct write is in
// progress and none will start, so the out fd may be shut down, closed and reused.
void stream_impl::stop_direct_writes() {
  std::lock_guard lock(direct_mu_);
  direct_fd_ = -1;
  direct_ended_.store(true, std::memory_order_relaxed);
}

try_write_result stream_impl::try_write_now(std::string_view bytes) noexcept {
  using st = try_write_result::status;
  if (direct_ended_.load(std::memory_order_relaxed)) return {st::closed};
  // Never waits: the holder is another direct writer, or the loop thread for a moment.
  std::unique_lock lock(direct_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return {st::busy};
  if (direct_fd_ < 0) return {st::closed};
  if (batch_in_flight_ || direct_owed_) return {st::busy};
  if (bytes.empty()) return {st::wrote};
  // The loop thread blocks SIGPIPE (loop.hpp): no masking there.
  ssize_t n = write_now(direct_fd_, out_is_socket_, bytes, loop_->in_loop_thread());
  if (n > 0) {
    auto written = static_cast<std::size_t>(n);
    if (written < bytes.size()) direct_owed_ = true;
    return {st::wrote, written};
  }
  if (n == 0 || n == -EAGAIN) return {st::full};
  return {st::failed, 0, static_cast<int>(n)};
}

void stream_impl::release_if_idle() {
  if (read_op_.in_flight() || write_op_.in_flight()) return;
  iov_.clear();
  keep_alive_.reset();
  attach_.clear();
  // The loop lets go of the numbers before they are closed (and may be reused).
  if (out_) loop_->forget(out_.get());
  if (in_) loop_->forget(in_.get());
  out_.reset();
  in_.reset();
}

}  // namespace

std::shared_ptr<duplex_stream> duplex_stream::create(std::shared_ptr<loop> l, base::unique_fd in,
                                                     base::unique_fd out, stream_events* events,
                                                     std::optional<base::fd_kind> in_kind,
                                                     std::optional<base::fd_kind> out_kind) {
  if (!l) throw std::invalid_argument("duplex_stream::create: no loop");
  if (!in) throw std::invalid_argument("duplex_stream::create: no input fd");
  if (out && out.get() == in.get()) {
    bool borrowed = in.borrowed() || out.borrowed();
    int fd = in.release();
    out.release();
    in = borrowed ? base::unique_fd::borrow(fd) : base::unique_fd(fd);
  }
  // Made non-blocking first: fcntl fails on a descriptor that is not open, which
  // fd_kind::of would take for "not a socket".
  if (!in_kind || !in_kind->nonblocking) set_nonblocking(in.get());
  if (out && (!out_kind || !out_kind->nonblocking)) set_nonblocking(out.get());
  base::fd_kind ik = in_kind ? *in_kind : base::fd_kind::of(in.get());
  base::fd_kind ok = !out ? ik : out_kind ? *out_kind : base::fd_kind::of(out.get());
  return std::make_shared<stream_impl>(std::move(l), std::move(in), std::move(out), ik, ok, events);
}

}  // namespace bokbok::io
