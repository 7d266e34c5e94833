// The outbound side of a connection: queueing records and messages, writing them, and
// the short cut that lets a caller's thread write its own small record when the send side
// is idle (saving the loop thread's wake-up, the costliest step of a small call), in
// plain and key mode alike. Who may write, and who seals: rpc/send_path.hpp.
#include <cerrno>
#include <cstring>

#include "rpc/connection_impl.hpp"
#include "wire/message_codec.hpp"

namespace bokbok::detail {

namespace {
constexpr std::size_t header_size = wire::record_header_size + wire::frame_header_size;
constexpr std::size_t headroom = framed_headroom;

// Encodes once, leaving room in front: a message that fits one frame becomes its
// record in place (no second copy); a larger one is cut into frames from that buffer.
// `size`: wire::encoded_size(m), which the caller has at hand.
wire::gathered_message encode_copied(const message& m, std::size_t size) {
  wire::gathered_message framed;
  framed.bytes.reserve(headroom + size);
  framed.bytes.resize(headroom);
  wire::encode_message(m, framed.bytes);
  return framed;
}
}  // namespace

wire::gathered_message connection_impl::encode_framed(const message& m) {
  return encode_copied(m, wire::encoded_size(m));
}

// The same for a message given up by its caller: one of several frames keeps its large
// fields where they are (wire::gathered_message), so they go out with writev, or are
// sealed, from the caller's own memory: bulk sending copies nothing in user space. One
// that fits a frame is copied as above (its record is one buffer).
wire::gathered_message connection_impl::encode_framed(message&& m) {
  if (const std::size_t size = wire::encoded_size(m); size <= wire::max_frame_payload)
    return encode_copied(m, size);
  wire::gathered_message framed;
  framed.bytes.resize(headroom);
  // Below this a field is copied: a piece of its own would cost an iovec (and, at a
  // frame's edge in key mode, a join) for little saved.
  constexpr std::size_t in_place_from = 16 * 1024;
  wire::encode_gathered(std::move(m), framed, in_place_from);
  return framed;
}

// `mu_` held: why a message framed by encode_framed may not be sent, if it may not.
std::optional<std::string> connection_impl::too_large_locked(
    const char* what, const wire::gathered_message& framed) const {
  std::size_t size = framed.size() - headroom;
  if (size <= send_limit_) return std::nullopt;
  return std::string(what) + " of " + std::to_string(size) +
         " bytes exceeds the connection's maximum message size of " +
         std::to_string(send_limit_) + " bytes";
}

// Any thread, `mu_` held: queues one whole message (framed by encode_framed), or sends
// it at once when it is a single frame and nothing else is queued or being written.
// Works for every message type. `fds` (1..253, only when both sides offered feature_fds)
// add the FDS flag and count after any deadline prefix; such a message always goes
// through the outbox and the loop's write_with_fds (try_write_now carries no fds).
void connection_impl::queue_message_locked(std::unique_lock<std::mutex>& lock,
                                           wire::frame_type type, std::uint32_t id,
                                           wire::gathered_message framed,
                                           std::optional<std::uint32_t> deadline_ms,
                                           std::vector<base::unique_fd> fds,
                                           std::uint8_t extra_flags) {
  // The payload: [deadline prefix] [fd count] message; `start` is where its headers go.
  std::size_t start = headroom;
  std::uint8_t flags = extra_flags;
  if (!fds.empty()) {
    start -= wire::fds_prefix_size;
    flags |= wire::flag_fds;
    framed.bytes[start] = static_cast<char>(fds.size());
  }
  if (deadline_ms) {
    start -= wire::deadline_prefix_size;
    flags |= wire::flag_deadline;
    std::string prefix;
    wire::put_deadline_prefix(prefix, *deadline_ms);
    std::memcpy(framed.bytes.data() + start, prefix.data(), prefix.size());
  }
  start -= header_size;
  const std::size_t size = framed.size() - start - header_size;
  // Through the outbox, which cuts the frames: a message of several frames, one with fds
  // (try_write_now carries none), or one that waits behind a large message of its stream
  // (a stream call's response).
  if (size > wire::max_frame_payload || !framed.contiguous() || !fds.empty() ||
      send_.queue().waits(type, id)) {
    send_.queue().push_message(type, id, std::move(framed), start + header_size, flags,
                               std::move(fds));
    return flush_soon(lock);
  }
  auto header = wire::encode_frame_header(type, flags, id, size);
  std::memcpy(framed.bytes.data() + start, header.bytes, header_size);
  queue_record_locked(lock, std::string_view(framed.bytes).substr(start));
}

void connection_impl::queue_record_locked(std::unique_lock<std::mutex>& lock,
                                          std::string_view record) {
  if (!send_now_locked(lock, record)) {
    send_.queue().push_record_bytes(record);
    flush_soon(lock);
  }
}

// Any thread, `mu_` held (released during the sealing and the write): when the send side
// is idle (rpc::caller_may_write), takes the writer role and writes `record` from this
// thread with the stream's try_write_now, sealed first in key mode (send_path.hpp). What
// the kernel does not take goes out next, ahead of everything, from the loop (the stream
// takes nothing more directly until then); a failed write is left for the loop's own
// write to report. Returns false, having done nothing, when the send side is busy.
bool connection_impl::send_now_locked(std::unique_lock<std::mutex>& lock,
                                      std::string_view record) {
  // The frame trace sees records where the loop writes them (flush): no short cut. Nor
  // while the loop thread handles a read: its records go out together (in_read_).
  const bool corked = cfg_.loop->in_loop_thread() && in_read_;
  auto w = send_.begin_direct(!trace_ && !corked, static_cast<bool>(cfg_.keys));
  if (!w) return false;
  lock.unlock();
  thread_local std::string sealed;  // this thread's sealing buffer, reused
  std::string_view out;
  io::try_write_result r{};
  const bool sealed_ok = w->sink.seal_record(record, sealed, out);
  if (sealed_ok) r = w->stream->try_write_now(out);
  lock.lock();
  auto done = send_.end_direct(*w, sealed_ok, out, r);
  direct_write_cv_.notify_all();  // finish() waits for this write to be over
  if (done.not_sent)
    if (auto* c = calls_.find(done.not_sent)) c->not_sent = true;
  if (done.flush) flush_soon(lock);
  return true;
}

void connection_impl::flush_soon(std::unique_lock<std::mutex>& lock) {
  if (!send_.want_flush()) return;
  if (cfg_.loop->in_loop_thread()) return post_flush();
  lock.unlock();
  post_flush();
  lock.lock();
}

void connection_impl::post_flush() {
  cfg_.loop->post([self = shared_from_this()] { self->flush(); });
}

void connection_impl::schedule_flush_locked() {
  if (send_.want_flush()) post_flush();
}

// Loop thread: starts the next write when none is in flight. The batch is taken under
// `mu_`, then sealed (key mode) and written by this thread, which holds the writer role
// meanwhile (send_path.hpp).
void connection_impl::flush() {
  std::unique_lock lock(mu_);
  send_.flush_started();
  if (send_.writing() || !stream_) return;
  auto b = std::make_shared<rpc::batch>();
  std::vector<queued_call> start;  // requests the outbox has room for again
  rpc::record_sink sink;
  switch (send_.take_write(*b, key_.get(), sink)) {
    case rpc::send_path::taken::nothing:
      return;
    case rpc::send_path::taken::raw:
      break;
    case rpc::send_path::taken::records:
      if (trace_) rpc::trace_sent(trace_, *b);  // plain frames, before sealing
      after_dequeue_locked(start);
      break;
  }
  lock.unlock();
  if (!send_.seal(*b, sink)) {
    // The cipher is spent: nothing more may go out; the writer role stays taken.
    for (auto& q : start) start_handler(std::move(q));
    return;
  }
  // The batch rides along as keep_alive: after a close the kernel may still be reading it.
  if (b->attach.empty()) {
    stream_->write(b->iov, b);
  } else {
    // Fds of its messages go with their first records' bytes (PROTOCOL.md §13).
    std::vector<io::fd_attachment> fds = std::move(b->attach);
    stream_->write_with_fds(b->iov, std::move(fds), b);
  }
  for (auto& q : start) start_handler(std::move(q));
}

void connection_impl::on_write_done(int err) {
  auto keep = shared_from_this();
  std::unique_lock lock(mu_);
  send_.write_done();
  if (err < 0) {
    bool already_closed = life_.state() == phase::closed;
    lock.unlock();
    // Closed already (our close frame could not be written): stop the stream now rather
    // than on the drain timer.
    if (already_closed) return stream_ ? drop_stream() : void();
    if (!preamble_done_) {
      // The peer left before we could even greet it. Its side of the story (what it
      // sent, if anything) arrives as the read end; the handshake timer bounds the wait.
      return;
    }
    // A peer that has gone (its end closed or reset) is a lost connection, like an end
    // of stream without a close frame; other write errors are named as they are.
    bool gone = err == -EPIPE || err == -ECONNRESET;
    return finish(end_kind::transport,
                  std::string(gone ? "connection lost: the peer went away (write failed: "
                                   : "write failed: ") +
                      std::strerror(-err) + (gone ? ")" : ""));
  }
  if (life_.state() == phase::closed && !send_.has_unsent() && stream_) {
    // Closed: the link is let go of as soon as the last frames are out.
    lock.unlock();
    return end_output();
  }
  lock.unlock();
  flush();
}

void connection_impl::send_response(std::uint32_t id, message response, fd_list fds) {
  // Checked before encoding, so an answer the peer would refuse is never copied.
  // send_limit_ was set (under mu_) before the connection opened, and so before any
  // request could reach a handler: it is read here without the lock.
  if (std::size_t size = wire::encoded_size(response); size > send_limit_)
    return send_error(id, error_code::too_large,
                      "response of " + std::to_string(size) +
                          " bytes exceeds the connection's maximum message size of " +
                          std::to_string(send_limit_) + " bytes");
  wire::gathered_message framed = encode_framed(std::move(response));
  std::unique_lock lock(mu_);
  if (life_.state() != phase::open) return;  // closed: late answers are dropped
  // A stream call's answer ends its stream; it goes after the stream's last message
  // (queue_message_locked asks the outbox), with its fds like any response.
  if (!inbound_streams_.empty()) end_inbound_stream_locked(id);
  // Queued at once, whatever the outbox holds: a handler thread (shared by every
  // connection of a server) never waits for a peer that does not read. The outbox stays
  // bounded because, while it is over max_send_queue, reading pauses (on_data) and no
  // further handler of this connection starts (defer_while_send_full): it passes the
  // bound by at most the answers of the handlers already running.
  queue_message_locked(lock, wire::frame_type::response, id, std::move(framed), std::nullopt,
                       to_io_fds(std::move(fds)));
}

void connection_impl::send_error(std::uint32_t id, error_code code, std::string_view text) {
  std::string record;
  wire::append_code_frame(record, wire::frame_type::error, id, static_cast<std::uint16_t>(code),
                          text);
  std::unique_lock lock(mu_);
  if (life_.state() != phase::open) return;
  if (!inbound_streams_.empty() && inbound_streams_.count(id)) {
    // A stream call's error, like its response, goes after its stream's last message.
    end_inbound_stream_locked(id);
    send_.queue().push_record_after(wire::frame_type::reply_stream, id, record);
    return flush_soon(lock);
  }
  queue_record_locked(lock, record);
}

}  // namespace bokbok::detail
