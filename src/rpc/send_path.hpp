// send_path: how a connection's records reach the wire, and who may write them.
//
// The writer role. At most one thread at a time writes to a connection's stream, and only
// that thread seals (key mode): so records are sealed in the order they are written, and
// the send cipher's nonces follow the wire. The role belongs either to
//  - a caller's thread, for its own one record, when the send side is idle (nothing
//    queued or unsent, no batch in flight, no flush posted: caller_may_write()); it
//    seals and writes that record itself (the direct write, no loop wake-up); but not
//    the loop thread past the first frame of a read (connection_impl::in_read_): what
//    it sends then, such as inline handlers' answers, goes out in one batch after the
//    read; or
//  - the loop thread, a batch at a time, from the outbox's take_batch until the write
//    is done.
// The role is taken and given back under the connection's mutex (send_path's `writing_`
// flag); sealing and the write itself run without the mutex.
//
// The record sink turns the outbox's plain records into what goes on the wire: as they
// are (plain mode), or each frame sealed into one record (key mode, PROTOCOL.md §9.6),
// from the frames as the outbox cut them (batch::small_sizes, batch::headers).
//
// The send_path class below is the part of a connection that owns all of this: the
// outbox, the bytes that go out ahead of it, the writer role, the sink, the sealing
// buffers and the stream callers write to directly. The connection keeps one and calls
// it; the posting of flushes, the frame trace and the call table stay the connection's.
//
// Threads: a record_sink is a value (a pointer to the connection's send cipher, or
// none), set and copied under the connection's mutex; seal_* run only on the thread that
// holds the writer role. send_path: see its own comment.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/record_cipher.hpp"
#include "io/duplex_stream.hpp"
#include "rpc/key_session.hpp"
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
// Memory: release_idle() lets go of them when the send side falls idle, but for one
// small buffer (at most `idle_keep` bytes: key mode's request/response then allocates
// nothing per round trip); a buffer that grew past `keep_limit` is let go of once its
// batch is done. So an idle connection holds at most idle_keep bytes of them.
//
// Threads: used only by the thread that holds the writer role for a batch (the loop
// thread); release_idle() on that thread too.
class sealed_buffers {
 public:
  static constexpr std::size_t keep_limit = 4u << 20;
  static constexpr std::size_t idle_keep = 8u << 10;

  // A buffer of at least `n` bytes (its size(); the contents are undefined) that no
  // batch refers to.
  std::shared_ptr<std::string> take(std::size_t n);
  // Lets go of the buffers but one of at most idle_keep bytes that no batch holds (a
  // batch still holding one keeps it alive until it is done).
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

// The send side of one connection: what is still to be written and who writes it.
//
// Threads: every member function is called with the connection's mutex held, except
// queued_bytes() (a recent value without it: outbox::queued_bytes) and seal() (the
// thread that holds the writer role for a batch, the loop thread, without the mutex:
// it touches only the batch and the sealing buffers, which nothing else touches then).
class send_path {
 public:
  // Bytes a loop write may carry beyond its small records: large enough to amortise a
  // system call, small enough that a ping queued behind it waits little (~0.2 ms here).
  static constexpr std::size_t batch_bytes = 512 * 1024;

  // What is queued. Records and messages go to the outbox; bytes for the wire as they
  // are (the preamble and handshake of key mode) go out before anything in it.
  outbox& queue() { return outbox_; }
  void push_raw(std::string_view bytes) { raw_pending_.append(bytes); }
  std::size_t queued_bytes() const { return outbox_.queued_bytes(); }
  bool has_unsent() const { return !outbox_.empty() || !raw_pending_.empty(); }
  bool has_raw() const { return !raw_pending_.empty(); }
  // Whether everything queued has been written (no write under way, nothing queued).
  bool all_written() const { return !writing_ && !has_unsent(); }
  // Forgets the queued records and messages (not the raw bytes: a refusal's decoy still
  // goes out).
  void drop_queued() { outbox_ = outbox(); }

  // A write holds the writer role: a loop batch or a caller's direct write.
  bool writing() const { return writing_; }
  // A caller's thread is writing directly (what a close waits out).
  bool direct_writing() const { return direct_writing_; }

  // The stream callers may write to directly; dropped when the connection lets the
  // stream go (a caller mid-write keeps its own reference).
  void set_stream(std::shared_ptr<io::duplex_stream> s) { direct_stream_ = std::move(s); }
  void drop_stream() { direct_stream_.reset(); }

  // The request whose record call() is queueing now (0: none): a direct write that the
  // gone peer took nothing of reports it (direct_done::not_sent).
  void set_direct_request(std::uint32_t id) { direct_request_ = id; }
  // The request whose record was the last bytes written (by a direct write), 0 when
  // something else went after it: a peer that resets the connection did not read it.
  std::uint32_t last_written_request() const { return last_written_request_; }

  // Whether the connection must post a flush now (none posted, no write under way);
  // true marks one posted. flush_started() when the posted flush runs.
  bool want_flush();
  void flush_started() { flush_scheduled_ = false; }

  // A caller's direct write of its own record (send_path.hpp, the writer role).
  struct direct_write {
    std::shared_ptr<io::duplex_stream> stream;
    record_sink sink;
    std::uint32_t request = 0;
  };
  // Takes the writer role for a direct write when rpc::caller_may_write allows it (and
  // `allowed`: the frame trace wants every record written by the loop); key mode
  // (`key_mode`) waits until the sink seals. Empty: nothing was taken.
  std::optional<direct_write> begin_direct(bool allowed, bool key_mode);
  struct direct_done {
    std::uint32_t not_sent = 0;  // a request the peer cannot have run (nothing written)
    bool flush = false;          // something is left to send: post a flush
  };
  // Gives the role back after writing `out` (sealed unless `sealed_ok` is false: then
  // nothing went out and nothing more may) with result `r`. What the kernel did not take
  // goes out next, before the outbox (has_unsent()).
  direct_done end_direct(const direct_write& w, bool sealed_ok, std::string_view out,
                         const io::try_write_result& r);

  // Loop thread: what take_write moved into a batch.
  enum class taken { nothing, raw, records };
  // Loop thread, no write under way: moves the next write into `b` (clear) and takes the
  // writer role for it, with `sink` set to what seals it. Raw bytes first, as they are;
  // then, once key mode's handshake is done (`key` null: plain), the outbox's next
  // batch, from then on sealed. When nothing is left, lets go of the sealing buffers
  // (sealed_buffers::release_idle: one small one stays).
  taken take_write(batch& b, key_session* key, record_sink& sink);
  // Writer role held, without the mutex: makes `b` ready for the wire (record_sink).
  bool seal(batch& b, const record_sink& sink) { return sink.seal_batch(b, sealed_); }
  // The write of a batch is over: the role is given back.
  void write_done() { writing_ = false; }

  // For tests: bytes held by the sealing buffers.
  std::size_t sealing_bytes() const { return sealed_.held_bytes(); }

 private:
  outbox outbox_;
  // Bytes that go out as they are, before anything in the outbox (key mode: preamble,
  // handshake messages, a refusal's decoy; either mode: a direct write's unsent rest).
  std::string raw_pending_;
  bool writing_ = false;          // a batch is in flight, or a caller writes directly
  bool direct_writing_ = false;   // ...a caller, that is
  bool flush_scheduled_ = false;  // a flush is posted
  // Plain, or sealing once key mode's handshake is done (set by take_write).
  record_sink sink_;
  sealed_buffers sealed_;  // the writer of batches (loop thread) only
  std::shared_ptr<io::duplex_stream> direct_stream_;
  std::uint32_t direct_request_ = 0;
  std::uint32_t last_written_request_ = 0;
};

}  // namespace bokbok::rpc
