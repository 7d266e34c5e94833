// send_path: how a connection's records reach the wire, and who may write them.
//
// The writer role. At most one thread at a time writes to a connection's stream, and only
// that thread seals (key mode): so records are sealed in the order they are written, and
// the send cipher's nonces follow the wire. The role belongs either to
//  - a caller's thread, for its own one record, when the send side is idle (nothing
//    queued or unsent, no batch in flight, no flush posted: caller_may_write()); it
//    seals and writes that record itself (the direct write, no loop wake-up); or
//  - the loop thread, a batch at a time, from the outbox's take_batch until the write
//    is done.
// The role is taken and given back under the connection's mutex (its `writing_` flag);
// sealing and the write itself run without the mutex.
//
// The record sink turns the outbox's plain records into what goes on the wire: as they
// are (plain mode), or each frame sealed into one record (key mode, PROTOCOL.md §9.6),
// from the frames as the outbox cut them (batch::small_sizes, batch::headers).
//
// Threads: a record_sink is a value (a pointer to the connection's send cipher, or
// none), set and copied under the connection's mutex; seal_* run only on the thread that
// holds the writer role.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "crypto/record_cipher.hpp"
#include "rpc/outbox.hpp"

namespace bokbok::rpc {

// What the connection knows, under its mutex, of its send side.
struct send_side {
  bool in_flight = false;     // a batch is being written, or a caller is writing
  bool flush_posted = false;  // the loop will write next
  bool queued = false;        // the outbox, or bytes ready for the wire, are not empty
  bool stream = false;        // there is a stream to write to
  bool sink_ready = false;    // the sink can take records (key mode: after the handshake)
};

// Whether a caller's thread may take the writer role for its own record now.
inline bool caller_may_write(const send_side& s) {
  return !s.in_flight && !s.flush_posted && !s.queued && s.stream && s.sink_ready;
}

// The buffers that sealed batches are written into, reused from batch to batch so that
// bulk sending in key mode allocates (and faults in) nothing per batch. Two, because the
// stream may still hold the previous batch (and so its buffer) when the next is sealed:
// a buffer is reused only when no batch refers to it any more.
//
// Memory: release_idle() lets go of them when the send side falls idle, and a buffer
// that grew past `keep_limit` is let go of once its batch is done, so an idle connection
// holds none of them.
//
// Threads: used only by the thread that holds the writer role for a batch (the loop
// thread); release_idle() on that thread too.
class sealed_buffers {
 public:
  static constexpr std::size_t keep_limit = 4u << 20;

  // A buffer of at least `n` bytes (its size(); the contents are undefined) that no
  // batch refers to.
  std::shared_ptr<std::string> take(std::size_t n);
  // Lets go of the buffers (a batch still holding one keeps it alive until it is done).
  void release_idle();
  // Bytes held in buffers (their capacity), for tests and memory checks.
  std::size_t held_bytes() const;

 private:
  std::shared_ptr<std::string> bufs_[2];
};

class record_sink {
 public:
  record_sink() = default;  // plain: records go out as they are
  // Sealing with `send` (key_session::send_cipher(), once the handshake is done), which
  // must outlive the sink's copies (the connection owns both).
  explicit record_sink(crypto::record_cipher* send) : key_(send) {}

  bool sealing() const { return key_ != nullptr; }

  // Writer role held: makes batch `b` ready for the wire. Plain: as it is. Sealing: its
  // records sealed in order, each frame straight from its header and payload, into one
  // buffer from `buffers` (which `b.keep` then holds; one iovec). False when the
  // cipher is spent (nothing of `b` may go out, nor anything after it).
  bool seal_batch(batch& b, sealed_buffers& buffers) const;

  // Writer role held: the wire bytes of one whole plain record: the record itself, or
  // (sealing) its frame sealed into `scratch`. False when the cipher is spent.
  bool seal_record(std::string_view record, std::string& scratch, std::string_view& to_write) const;

 private:
  crypto::record_cipher* key_ = nullptr;
};

}  // namespace bokbok::rpc
