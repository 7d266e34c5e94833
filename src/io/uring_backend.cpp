#include "io/uring_backend.hpp"

#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <system_error>
#include <utility>

namespace bokbok::io {
namespace {

constexpr std::uint64_t current_position = ~std::uint64_t{0};  // offset -1: RW_CUR_POS
constexpr unsigned reap_batch = 64;
constexpr int sqe_attempts = 64;
constexpr auto exit_drain_limit = std::chrono::seconds(2);
constexpr int lent_group = 0;  // the one provided buffer group

std::uint64_t user_data_of(const void* p) noexcept { return reinterpret_cast<std::uintptr_t>(p); }

[[noreturn]] void fail(int err, const char* what) {
  throw std::system_error(err, std::system_category(), what);
}

__kernel_timespec to_timespec(clock::duration d) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  if (ns < 0) ns = 0;
  return {ns / 1'000'000'000, ns % 1'000'000'000};
}

// ThreadSanitizer does not see liburing's mmap and munmap (raw system calls), so when a
// new ring is mapped where a finished loop thread's ring was (that thread may have been
// detached), it reports the old thread's accesses as races with the new one. The kernel
// orders the unmap before the map; these annotations tell the sanitizer so. No-ops in
// ordinary builds.
#if defined(__SANITIZE_THREAD__)
#define BOKBOK_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BOKBOK_TSAN 1
#endif
#endif
#ifdef BOKBOK_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
char ring_mapping_order;  // only an address to synchronise on
void ring_mapped() { __tsan_acquire(&ring_mapping_order); }
void ring_unmapping() { __tsan_release(&ring_mapping_order); }
#else
void ring_mapped() {}
void ring_unmapping() {}
#endif

}  // namespace

// Cancel requests (and the setup NOP): their own result does not matter (the target
// completes by itself). reap() drops their CQEs; they are never handed back.
class uring_backend::cancel_op final : public completion {
 public:
  void complete(int, std::uint32_t) override {}
};

// A sendmsg in flight: owns the msghdr, forwards the result to the caller's completion
// when the reactor calls it.
class uring_backend::send_op final : public completion {
 public:
  explicit send_op(uring_backend& b) : backend_(b) {}
  void complete(int result, std::uint32_t flags) override {
    completion* c = std::exchange(user, nullptr);
    backend_.free_send_ops_.push_back(this);
    c->complete(result, flags);
  }
  completion* user = nullptr;
  msghdr msg{};

 private:
  uring_backend& backend_;
};

std::unique_ptr<loop_backend> make_uring_backend(const loop_options& opts) {
  return std::make_unique<uring_backend>(opts);
}

uring_backend::uring_backend(const loop_options& opts)
    : cancel_op_(std::make_unique<cancel_op>()) {
  io_uring_params p{};
  // SUBMIT_ALL (5.18): one bad SQE does not hold back the rest. COOP_TASKRUN (5.19): no
  // IPI to run completions, the loop thread runs them when it next enters the kernel.
  p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
  int r = io_uring_queue_init_params(opts.ring_entries, &ring_, &p);
  if (r == -EINVAL) {
    p = io_uring_params{};
    r = io_uring_queue_init_params(opts.ring_entries, &ring_, &p);
  }
  if (r < 0) fail(-r, "io_uring_queue_init");
  ring_mapped();
  try {
    check_features(p.features);
    check_enter();
    set_up_lending(opts.lent_buffers);
  } catch (...) {
    ring_unmapping();
    io_uring_queue_exit(&ring_);
    throw;
  }
  ready_.reserve(2 * reap_batch);
}

void uring_backend::check_features(unsigned features) {
  if ((features & IORING_FEAT_RW_CUR_POS) == 0) fail(ENOSYS, "io_uring without RW_CUR_POS");
  io_uring_probe* probe = io_uring_get_probe_ring(&ring_);
  if (probe == nullptr) fail(ENOSYS, "io_uring probe");
  bool ok = true;
  for (int op : {IORING_OP_READ, IORING_OP_WRITEV, IORING_OP_SENDMSG, IORING_OP_RECVMSG,
                 IORING_OP_ASYNC_CANCEL, IORING_OP_POLL_ADD})
    ok = ok && io_uring_opcode_supported(probe, op);
  // IORING_ASYNC_CANCEL_ALL/ANY came with 5.19, as did IORING_OP_SOCKET.
  cancel_all_ = probe->last_op >= IORING_OP_SOCKET;
  io_uring_free_probe(probe);
  if (!ok) fail(ENOSYS, "io_uring lacks READ, WRITEV, SENDMSG, RECVMSG, ASYNC_CANCEL or POLL_ADD");
}

// A ring can be created where io_uring_enter is still refused (a seccomp filter that
// lets io_uring_setup through): one NOP round trip proves the ring usable.
void uring_backend::check_enter() {
  io_uring_sqe* s = sqe();
  io_uring_prep_nop(s);
  io_uring_sqe_set_data(s, cancel_op_.get());
  int r = io_uring_submit_and_wait(&ring_, 1);
  if (r < 0) fail(-r, "io_uring_enter");
  reap();
  ready_.clear();
}

uring_backend::~uring_backend() {
  ring_unmapping();
  io_uring_queue_exit(&ring_);  // the kernel lets go of the buffer ring with the ring
  tear_down_lending();
}

// Maps `count` buffers and a provided buffer ring over them, and registers it. An
// older kernel refuses the registration: then nothing is lent (lends() is false).
void uring_backend::set_up_lending(unsigned count) {
  if (count == 0) return;
  if (count > 32768 || (count & (count - 1)) != 0)
    fail(EINVAL, "loop_options::lent_buffers: a power of two up to 32768");
  const std::size_t ring_bytes = count * sizeof(io_uring_buf);
  void* ring = ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ring == MAP_FAILED) fail(errno, "mmap (lent buffer ring)");
  void* base = ::mmap(nullptr, count * lent_buffer_size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) {
    int err = errno;
    ::munmap(ring, ring_bytes);
    fail(err, "mmap (lent buffers)");
  }
  lent_ring_ = static_cast<io_uring_buf_ring*>(ring);
  lent_base_ = static_cast<char*>(base);
  lent_count_ = count;
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uintptr_t>(ring);
  reg.ring_entries = count;
  reg.bgid = lent_group;
  if (io_uring_register_buf_ring(&ring_, &reg, 0) < 0) return tear_down_lending();
  io_uring_buf_ring_init(lent_ring_);
  const int mask = io_uring_buf_ring_mask(count);
  for (unsigned i = 0; i < count; ++i)
    io_uring_buf_ring_add(lent_ring_, lent_base_ + i * lent_buffer_size, lent_buffer_size,
                          static_cast<unsigned short>(i), mask, static_cast<int>(i));
  io_uring_buf_ring_advance(lent_ring_, static_cast<int>(count));
}

void uring_backend::tear_down_lending() noexcept {
  if (lent_ring_) ::munmap(lent_ring_, lent_count_ * sizeof(io_uring_buf));
  if (lent_base_) ::munmap(lent_base_, lent_count_ * lent_buffer_size);
  lent_ring_ = nullptr;
  lent_base_ = nullptr;
  lent_count_ = 0;
}

io_uring_sqe* uring_backend::sqe() {
  for (int attempt = 0; attempt < sqe_attempts; ++attempt) {
    if (io_uring_sqe* s = io_uring_get_sqe(&ring_)) {
      ++inflight_;
      return s;
    }
    int r = io_uring_submit(&ring_);
    if (r == -EBUSY || r == -EAGAIN) {
      reap();  // the completion queue is full: move CQEs aside (handed back later)
    } else if (r < 0 && r != -EINTR) {
      fail(-r, "io_uring_submit");
    }
  }
  fail(EBUSY, "io_uring submission queue stays full");
}

void uring_backend::submit_read(int fd, void* buf, std::size_t len, completion* c) {
  io_uring_sqe* s = sqe();
  io_uring_prep_read(s, fd, buf, static_cast<unsigned>(std::min<std::size_t>(len, INT_MAX)),
                     current_position);
  io_uring_sqe_set_data(s, c);
}

void uring_backend::submit_writev(int fd, bool is_socket, const iovec* iov, int iovcnt,
                                  completion* c) {
  io_uring_sqe* s = sqe();
  if (!is_socket) {
    io_uring_prep_writev(s, fd, iov, static_cast<unsigned>(iovcnt), current_position);
    io_uring_sqe_set_data(s, c);
    return;
  }
  if (free_send_ops_.empty()) {
    send_ops_.push_back(std::make_unique<send_op>(*this));
    free_send_ops_.push_back(send_ops_.back().get());
  }
  send_op* op = free_send_ops_.back();
  free_send_ops_.pop_back();
  op->user = c;
  op->msg = msghdr{};
  op->msg.msg_iov = const_cast<iovec*>(iov);
  op->msg.msg_iovlen = static_cast<std::size_t>(iovcnt);
  io_uring_prep_sendmsg(s, fd, &op->msg, MSG_NOSIGNAL);
  io_uring_sqe_set_data(s, op);
}

// The caller keeps `msg` stable until completion, so no internal copy is needed.
void uring_backend::submit_recvmsg(int fd, msghdr* msg, completion* c) {
  io_uring_sqe* s = sqe();
  io_uring_prep_recvmsg(s, fd, msg, MSG_CMSG_CLOEXEC);
  io_uring_sqe_set_data(s, c);
}

void uring_backend::submit_read_lent(int fd, msghdr* msg, completion* c) {
  io_uring_sqe* s = sqe();
  if (msg) {
    msg->msg_iov[0].iov_base = nullptr;  // the kernel reads into the buffer it picks
    msg->msg_iov[0].iov_len = std::min(msg->msg_iov[0].iov_len, lent_buffer_size);
    io_uring_prep_recvmsg(s, fd, msg, MSG_CMSG_CLOEXEC);
  } else {
    io_uring_prep_read(s, fd, nullptr, lent_buffer_size, current_position);
  }
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = lent_group;
  io_uring_sqe_set_data(s, c);
}

const char* uring_backend::lent_data(std::uint32_t flags) const noexcept {
  return lent_base_ + (flags >> IORING_CQE_BUFFER_SHIFT) * lent_buffer_size;
}

void uring_backend::give_back(std::uint32_t flags) noexcept {
  const unsigned id = flags >> IORING_CQE_BUFFER_SHIFT;
  io_uring_buf_ring_add(lent_ring_, lent_base_ + id * lent_buffer_size, lent_buffer_size,
                        static_cast<unsigned short>(id), io_uring_buf_ring_mask(lent_count_), 0);
  io_uring_buf_ring_advance(lent_ring_, 1);
}

void uring_backend::submit_sendmsg(int fd, const msghdr* msg, completion* c) {
  io_uring_sqe* s = sqe();
  io_uring_prep_sendmsg(s, fd, msg, MSG_NOSIGNAL);
  io_uring_sqe_set_data(s, c);
}

void uring_backend::submit_poll(int fd, completion* c) {
  io_uring_sqe* s = sqe();
  io_uring_prep_poll_add(s, fd, POLLIN);
  io_uring_sqe_set_data(s, c);
}

void uring_backend::cancel(completion* c) {
  submit_cancel(c);
  for (auto& op : send_ops_)
    if (op->user == c) submit_cancel(op.get());
}

void uring_backend::submit_cancel(const void* target) {
  io_uring_sqe* s = sqe();
  io_uring_prep_cancel64(s, reinterpret_cast<std::uintptr_t>(target),
                         cancel_all_ ? IORING_ASYNC_CANCEL_ALL : 0);
  io_uring_sqe_set_data(s, cancel_op_.get());
}

void uring_backend::watch_wakeup(int fd) {
  wake_fd_ = fd;
  arm_wakeup();
}

void uring_backend::arm_wakeup() {
  io_uring_sqe* s = sqe();
  io_uring_prep_read(s, wake_fd_, &wake_value_, sizeof wake_value_, 0);
  io_uring_sqe_set_data(s, &wake_value_);
}

bool uring_backend::wait(std::optional<clock::duration> timeout,
                         std::vector<backend_event>& out) {
  bool busy = !ready_.empty() || woken_ || (timeout && *timeout <= clock::duration::zero());
  int r;
  if (busy) {
    // Always enters the kernel, so completions waiting as task work (COOP_TASKRUN) are
    // posted even while posted functions or timers keep the loop from blocking.
    r = io_uring_submit_and_get_events(&ring_);
  } else {
    __kernel_timespec ts{};
    if (timeout) ts = to_timespec(*timeout);
    io_uring_cqe* cqe = nullptr;
    r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, timeout ? &ts : nullptr, nullptr);
  }
  // -ETIME (a timer is due), -EINTR, -EBUSY and -EAGAIN just lead to reaping; anything
  // else would repeat forever, so it ends the loop thread loudly (std::terminate).
  if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY && r != -EAGAIN)
    fail(-r, "io_uring_enter");
  reap();
  out.swap(ready_);
  if (!woken_) return false;
  // Whatever the read's result (a count, or -EINTR), re-arm it before the reactor drains:
  // it clears the wake-up flag only now that the eventfd has been consumed.
  woken_ = false;
  arm_wakeup();
  return true;
}

void uring_backend::reap() {
  const std::uint64_t wake_data = user_data_of(&wake_value_);
  const std::uint64_t cancel_data = user_data_of(cancel_op_.get());
  io_uring_cqe* cqes[reap_batch];
  for (;;) {
    unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, reap_batch);
    if (n == 0) return;
    for (unsigned i = 0; i < n; ++i) {
      std::uint64_t data = cqes[i]->user_data;
      if (data == LIBURING_UDATA_TIMEOUT) continue;  // liburing's own
      --inflight_;
      if (data == wake_data) {
        woken_ = true;
      } else if (data != cancel_data) {
        ready_.push_back({static_cast<completion*>(io_uring_cqe_get_data(cqes[i])),
                          cqes[i]->res, cqes[i]->flags});
      }
    }
    io_uring_cq_advance(&ring_, n);
  }
}

void uring_backend::shutdown() noexcept {
  // Cancel what is left (by contract only the wake-up read) and wait for the kernel to
  // let go of it before the ring and the buffers go. Completions are not called any more.
  try {
    io_uring_sqe* s = sqe();
    if (cancel_all_) {
      io_uring_prep_cancel64(s, 0, IORING_ASYNC_CANCEL_ANY);
    } else {
      io_uring_prep_cancel64(s, reinterpret_cast<std::uintptr_t>(&wake_value_), 0);
    }
    io_uring_sqe_set_data(s, cancel_op_.get());
  } catch (const std::system_error&) {
    // No SQE to be had: wait for what is in flight all the same.
  }
  auto give_up = clock::now() + exit_drain_limit;
  while (inflight_ > 0 && clock::now() < give_up) {
    __kernel_timespec ts = to_timespec(std::chrono::milliseconds(100));
    io_uring_cqe* cqe = nullptr;
    io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    reap();
    ready_.clear();
  }
}

}  // namespace bokbok::io
