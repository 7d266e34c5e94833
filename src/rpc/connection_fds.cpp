// File descriptors in messages (PROTOCOL.md §13, README "File descriptors"): receiving
// them (loop thread: the fd queue, the fds of partial messages, the budget), the checks
// before sending, and the public calls that carry them. What arrives is owned from the
// start (owned_fd): every path that drops a message closes its fds by dropping them.
#include <sys/socket.h>

#include "bokbok/stream.hpp"
#include "rpc/connection_impl.hpp"
#include "rpc/error_ptr.hpp"
#include "rpc/fd_scope.hpp"

namespace bokbok::detail {

namespace {
thread_local handler_fds* current_fds = nullptr;
}  // namespace

handler_fds_scope::handler_fds_scope(handler_fds* h) noexcept : saved_(current_fds) {
  current_fds = h;
}
handler_fds_scope::~handler_fds_scope() { current_fds = saved_; }

std::vector<base::unique_fd> connection_impl::to_io_fds(fd_list fds) {
  std::vector<base::unique_fd> out;
  out.reserve(fds.size());
  for (auto& fd : fds) out.emplace_back(fd.release());
  return out;
}

void connection_impl::check_fds(std::size_t n, const char* what) const {
  if (n > wire::max_fds_per_message)
    throw usage_error(std::string("bokbok: ") + what + ": " + std::to_string(n) +
                      " file descriptors, more than the 253 one message may carry");
  if (!cfg_.carries_fds)
    throw usage_error(std::string("bokbok: ") + what + ": the connection to " + cfg_.peer +
                      " cannot carry file descriptors: only UNIX sockets, socketpairs and "
                      "exec: children with child.socketpair can");
  std::lock_guard lock(mu_);
  if (!features_fds_)
    throw usage_error(std::string("bokbok: ") + what + ": the peer " + cfg_.peer +
                      " does not take file descriptors (it did not offer them)");
}

// Loop thread: fds arrived, before the bytes of the record that declares them.
// A read brings the fds of at most one write, and the frames of the bytes before have
// taken theirs by the next read, but for a record begun and not yet whole: so more than
// 253 left over are fds no frame will declare (§13).
void connection_impl::on_fds(std::vector<base::unique_fd> fds) {
  if (closing_.finished) return;  // closed: dropped at once
  if (const std::size_t left = fd_queue_.size(); left > wire::max_fds_per_message) {
    fd_queue_.clear();
    return protocol_failure("the peer sent " + std::to_string(left) +
                            " file descriptors that no frame declared");
  }
  fd_queue_.push(std::move(fds));
}

rpc::received_fds connection_impl::hold_fds(fd_list fds) {
  if (fds.empty()) return {};
  return rpc::received_fds(std::move(fds), fds_waiting_);
}

// Loop thread, a message frame `f`: see the header.
bool connection_impl::take_frame_fds(const wire::frame_view& f, fd_list& got) {
  const std::uint64_t key = partial_key(f.type, f.call_id);
  if (f.flags & wire::flag_continued) {
    if (f.flags & wire::flag_more) return true;
    auto it = partial_fds_.find(key);
    if (it == partial_fds_.end()) return true;
    got = std::move(it->second);
    partial_fd_count_ -= got.size();
    partial_fds_.erase(it);
    return true;
  }
  if (!(f.flags & wire::flag_fds)) return true;
  if (!cfg_.carries_fds) {  // a receiver checks its own bit (§6.2)
    protocol_failure(std::string("a ") + wire::to_string(f.type) +
                     " flagged fds (0x10), but this side did not offer file "
                     "descriptors (feature 0x8)");
    return false;
  }
  const std::size_t n = wire::parse_first_prefix(f.flags, f.payload).fd_count;
  const std::size_t queued = fd_queue_.size();
  if (!fd_queue_.take(n, got)) {
    protocol_failure(std::string(wire::to_string(f.type)) + " on call " +
                     std::to_string(f.call_id) + " declares " + std::to_string(n) +
                     " fds, but " + std::to_string(queued) + " arrived");
    return false;
  }
  if (f.flags & wire::flag_more) {
    partial_fd_count_ += got.size();
    partial_fds_[key] = std::move(got);
    got.clear();
  }
  return true;
}

// Loop thread, right after take_frame_fds: whether the fds of `f`'s message (its first
// fragment) would pass options::max_received_fds with those held already.
bool connection_impl::fds_over_budget(const wire::frame_view& f, const fd_list& got) {
  if ((f.flags & wire::flag_continued) || !(f.flags & wire::flag_fds)) return false;
  std::size_t n = got.size();
  if (f.flags & wire::flag_more)
    if (auto it = partial_fds_.find(partial_key(f.type, f.call_id)); it != partial_fds_.end())
      n = it->second.size();
  std::size_t held = fd_queue_.size() + partial_fd_count_ + fds_waiting_->load();
  if (f.flags & wire::flag_more) held -= n;  // counted in partial_fd_count_ already
  return held + n > cfg_.opts.max_received_fds;
}

// Loop thread: closes the fds kept with the partial message of (type, id), if any.
void connection_impl::drop_partial_fds(wire::frame_type type, std::uint32_t id) {
  if (partial_fds_.empty()) return;
  if (auto it = partial_fds_.find(partial_key(type, id)); it != partial_fds_.end()) {
    partial_fd_count_ -= it->second.size();
    partial_fds_.erase(it);
  }
}

// Loop thread: refuses the message of `f` (added to the reassembler) like a busy one: a
// request answered busy, a response failing its call busy, a notification dropped; a
// stream message ends its call busy likewise (a stream may not lose a message). Its fds
// are closed (by the caller, and here those kept with a partial message).
void connection_impl::refuse_fds_over_budget(const wire::frame_view& f) {
  if (f.flags & wire::flag_more) {
    drop_partial_fds(f.type, f.call_id);
    frames_.messages().drop(f.type, f.call_id);
    sync_partial_charge();
  }
  std::string text = "busy: the file descriptors of this message would pass the receiving "
                     "connection's max_received_fds (" +
                     std::to_string(cfg_.opts.max_received_fds) +
                     ", received and not yet taken by the application)";
  if (f.type == wire::frame_type::request) {
    last_peer_request_ = std::max(last_peer_request_, f.call_id);
    send_error(f.call_id, error_code::busy, text);
  } else if (f.type == wire::frame_type::stream) {
    send_error(f.call_id, error_code::busy, text);  // a live stream call: answered, ended
  } else if (f.type == wire::frame_type::response) {
    complete_call(f.call_id, error_ptr<call_error>(error_code::busy, text), {});
  } else if (f.type == wire::frame_type::reply_stream) {  // our stream call: ended here
    std::uint64_t seq = 0;
    {
      std::lock_guard lock(mu_);
      if (auto* c = calls_.find(f.call_id)) seq = c->seq;
    }
    if (seq) end_call_locally(seq, error_code::busy, std::move(text));
  }  // a notification is dropped
}

}  // namespace bokbok::detail

namespace bokbok {

namespace this_call {

fd_list take_fds() {
  auto* h = detail::current_fds;
  if (!h) return {};
  return std::move(h->received);
}

void attach_fds(fd_list fds) {
  auto* h = detail::current_fds;
  if (fds.empty()) return;
  if (!h || !h->attach)
    throw usage_error("bokbok: this_call::attach_fds outside a request handler (a "
                      "notification has no response to carry them)");
  if (this_call::stream())
    throw usage_error("bokbok: this_call::attach_fds in a stream call: its final response "
                      "carries no fds to the caller; send them with stream::write(message, fds)");
  h->conn->check_fds(h->attach->size() + fds.size(), "this_call::attach_fds");
  for (auto& fd : fds) h->attach->push_back(std::move(fd));
}

}  // namespace this_call

}  // namespace bokbok
