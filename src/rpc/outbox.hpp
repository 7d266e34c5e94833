// outbox: what one connection has still to send, and the scheduler that turns it into
// write batches.
//
// Small records (control frames, and messages that fit in one frame) are copied into a
// byte buffer as they are queued and go out first, in order. Larger messages are cut
// into frames at send time, round-robin between messages, one frame per message per
// turn, so a 100 MiB response never holds back a ping or a small call. Large payloads
// are not copied: a batch's iovecs point into the queued message, and a message queued
// as a wire::gathered_message keeps its large fields where the caller had them (no
// encoding copy either). Where and how a message is cut, and its flags, are
// wire::message_fragment's (the rule the protocol vectors test).
//
// Threads: not synchronised; the connection guards it with its mutex (but see
// queued_bytes). A batch belongs to the thread that holds the send side's writer role
// (send_path.hpp) from take_batch until its write is over.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <string>
#include <string_view>
#include <vector>

#include "base/unique_fd.hpp"
#include "io/duplex_stream.hpp"
#include "wire/frame.hpp"
#include "wire/message_codec.hpp"
#include "wire/reassembly.hpp"

namespace bokbok::rpc {

// One write's worth of bytes. The iovecs point into `small`, `headers` and the large
// messages in `keep`, which the batch co-owns, so a batch alone keeps every byte it
// points to alive (the stream holds it until the kernel lets go, even after a close).
// Shape, as the outbox cut it (what key mode seals from, send_path.hpp): first `small`,
// whole records of the sizes in `small_sizes` (headers included), in order; then one
// frame per entry of `headers`, each followed by `frame_iovs` (same index) iovecs of its
// payload: one, or more where the payload spans pieces of a gathered message.
//
// File descriptors (PROTOCOL.md §13): `fds` holds those of the messages whose first
// fragment is in the batch, each with the index of that record in the batch (the
// records of `small`, then the frames, in order); the sink turns them into `attach`,
// with the offsets of those records' first bytes as written (plain or sealed).
struct record_fds {
  std::size_t record = 0;
  std::vector<base::unique_fd> fds;
};
struct batch {
  std::string small;
  std::vector<std::uint32_t> small_sizes;  // of each record in `small`, in order
  std::vector<wire::frame_header_bytes> headers;
  std::vector<std::uint32_t> frame_iovs;  // payload iovecs after each header
  std::vector<std::shared_ptr<const void>> keep;
  std::vector<iovec> iov;
  std::size_t bytes = 0;
  std::vector<record_fds> fds;
  std::vector<io::fd_attachment> attach;  // what write_with_fds sends (record_sink)
  void clear();
};

class outbox {
 public:
  // Appends whole encoded records (u16 length || frame), one or several (in plain mode,
  // also the preamble ahead of them).
  void push_record_bytes(std::string_view records);

  // Queues a request or response message for `call_id`: its encoded bytes are those of
  // `bytes` from offset `start` on (what comes before is unused headroom).
  // `first_flags` go on its first fragment (wire::flag_deadline, wire::flag_fds: the
  // prefixes are then part of `bytes`); `fds` go with the first byte of that fragment's
  // record.
  void push_message(wire::frame_type type, std::uint32_t call_id, std::string bytes,
                    std::size_t start = 0, std::uint8_t first_flags = 0,
                    std::vector<base::unique_fd> fds = {});
  // The same for a message gathered with its large fields in place: bytes from offset
  // `start` of the whole (`start` lies in message.bytes, before the first field in place).
  // One with a field in place is cut into frames at send time, whatever its size (only a
  // contiguous one is copied into `small`).
  void push_message(wire::frame_type type, std::uint32_t call_id, wire::gathered_message message,
                    std::size_t start = 0, std::uint8_t first_flags = 0,
                    std::vector<base::unique_fd> fds = {});

  // Stream messages (stream, reply_stream) of one call share their (type, id): one that
  // follows a large message of the same stream waits until that one's last fragment
  // is out (a receiver reassembles one message per (type, id) at a time, in order), and
  // so does `record` pushed with push_record_after (the stream's stream_end), and the
  // response that ends a responder's stream.
  void push_record_after(wire::frame_type type, std::uint32_t call_id, std::string_view record);

  // Whether a message of (type, id) pushed now must wait behind a large message of its
  // stream (see push_record_after): it must then go through push_message, not be
  // written directly nor pushed as record bytes.
  bool waits(wire::frame_type type, std::uint32_t call_id) const {
    const std::uint64_t hk = hold_key(type, call_id);
    return hk && !active_.empty() && active_.count(hk);
  }

  bool empty() const { return small_.empty() && large_.empty() && waiting_.empty(); }
  // Bytes queued. Exact under the connection's mutex; read without it, a value it had
  // lately, for a quick check that the caller repeats under the mutex when it matters.
  std::size_t queued_bytes() const { return queued_.get(); }

  // Moves the next batch of at most about `max_bytes` (never less than one frame) into
  // `b`, which must be clear. Returns false when there is nothing to send.
  bool take_batch(batch& b, std::size_t max_bytes);

 private:
  struct large_message {
    wire::frame_type type;
    std::uint32_t call_id;
    std::shared_ptr<const wire::gathered_message> bytes;
    std::size_t start = 0;  // where the message begins in the whole of *bytes
    std::size_t sent = 0;   // offset in the whole of *bytes of the next fragment
    std::size_t size = 0;   // bytes->size()
    // Where `sent` is: piece `piece` (see piece_of), `piece_at` bytes into it.
    std::size_t piece = 0;
    std::size_t piece_at = 0;
    std::uint8_t first_flags = 0;
    std::vector<base::unique_fd> fds;  // sent with its first fragment
  };
  static large_message make_large(wire::frame_type type, std::uint32_t call_id,
                                  wire::gathered_message message, std::size_t start,
                                  std::uint8_t first_flags, std::vector<base::unique_fd> fds);
  // Appends iovecs for the next `n` bytes of `m`, moving its place on.
  static void append_payload(large_message& m, std::size_t n, batch& b);
  void note_records(std::string_view records);
  // A large stream message of `key` has gone whole: what waited behind it goes now.
  void release_held(std::uint64_t key);
  static std::uint64_t key_of(wire::frame_type type, std::uint32_t id) {
    return (std::uint64_t(static_cast<std::uint8_t>(type)) << 32) | id;
  }
  static bool is_stream(wire::frame_type t) {
    return t == wire::frame_type::stream || t == wire::frame_type::reply_stream;
  }
  // What a message waits behind: its own stream's, or (a response) the responder's
  // stream of that call, which the answer ends. 0: nothing.
  static std::uint64_t hold_key(wire::frame_type t, std::uint32_t id) {
    if (is_stream(t)) return key_of(t, id);
    if (t == wire::frame_type::response) return key_of(wire::frame_type::reply_stream, id);
    return 0;
  }
  // Behind a large stream message of the same key: whole records (push_record_after), or
  // a message of any size (push_message), kept whole with its fds until its turn.
  struct held_item {
    std::string records;
    std::optional<large_message> large;
  };
  std::unordered_map<std::uint64_t, std::deque<held_item>> held_;
  std::unordered_set<std::uint64_t> active_;  // keys with a large stream message queued

  std::string small_;
  std::vector<std::uint32_t> small_sizes_;  // record sizes in small_, in order
  std::vector<record_fds> small_fds_;       // fds of records in small_ (index in small_sizes_)
  std::deque<large_message> large_;    // under way, round robin
  std::deque<large_message> waiting_;  // not started; beyond max_partial_messages
  // Changed only under the connection's mutex; atomic so that queued_bytes() may be
  // read without.
  struct byte_count {
    std::atomic<std::size_t> n{0};
    byte_count() = default;
    byte_count(const byte_count& o) : n(o.get()) {}
    byte_count& operator=(const byte_count& o) {
      n.store(o.get(), std::memory_order_relaxed);
      return *this;
    }
    std::size_t get() const { return n.load(std::memory_order_relaxed); }
    void add(std::size_t k) { n.store(get() + k, std::memory_order_relaxed); }
    void sub(std::size_t k) { n.store(get() - k, std::memory_order_relaxed); }
  };
  byte_count queued_;
};

}  // namespace bokbok::rpc
