// outbox: what one connection has still to send, and the scheduler that turns it into
// write batches.
//
// Small records (control frames, and messages that fit in one frame) are copied into a
// byte buffer as they are queued and go out first, in order. Larger messages are cut
// into frames at send time, round-robin between messages, one frame per message per
// turn, so a 100 MiB response never holds back a ping or a small call. Large payloads
// are not copied: a batch's iovecs point into the queued message. Where and how a message
// is cut, and its flags, are wire::message_fragment's (the rule the protocol vectors test).
//
// Threads: not synchronised; the connection guards it with its mutex (but see
// queued_bytes_unlocked). Batches are
// owned by the loop thread while their write is in flight.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "wire/frame.hpp"
#include "wire/reassembly.hpp"

namespace bokbok::rpc {

// One write's worth of bytes. The iovecs point into `small`, `headers` and the large
// messages in `keep`, which the batch co-owns, so a batch alone keeps every byte it
// points to alive (the stream holds it until the kernel lets go, even after a close).
// Shape: whole records, each either within one iovec or split once, after its headers
// (a large message's frame: headers, then payload), so a record's headers never
// straddle iovecs. (A direct write's unsent rest, push_front_record_bytes, may begin
// mid-record; key mode, which relies on the shape to seal records, never writes directly.)
struct batch {
  std::string small;
  std::vector<wire::frame_header_bytes> headers;
  std::vector<std::shared_ptr<const std::string>> keep;
  std::vector<iovec> iov;
  std::size_t bytes = 0;
  void clear();
};

class outbox {
 public:
  // Appends one already encoded record (or several).
  void push_record_bytes(std::string_view records);

  // Puts bytes back at the very front (the unsent rest of a direct write).
  void push_front_record_bytes(std::string_view records);

  // Queues a request or response message for `call_id`: its encoded bytes are those of
  // `bytes` from offset `start` on (what comes before is unused headroom).
  // `first_flags` go on its first fragment (wire::flag_deadline).
  void push_message(wire::frame_type type, std::uint32_t call_id, std::string bytes,
                    std::size_t start = 0, std::uint8_t first_flags = 0);

  bool empty() const { return small_.empty() && large_.empty() && waiting_.empty(); }
  std::size_t queued_bytes() const { return queued_.get(); }
  // The same read without the connection's mutex: a value it had lately, for a quick
  // check that the caller repeats under the mutex when it matters.
  std::size_t queued_bytes_unlocked() const { return queued_.get(); }

  // Moves the next batch of at most about `max_bytes` (never less than one frame) into
  // `b`, which must be clear. Returns false when there is nothing to send.
  bool take_batch(batch& b, std::size_t max_bytes);

 private:
  struct large_message {
    wire::frame_type type;
    std::uint32_t call_id;
    std::shared_ptr<const std::string> bytes;
    std::size_t start = 0;  // where the message begins in *bytes
    std::size_t sent = 0;   // offset in *bytes of the next fragment
    std::uint8_t first_flags = 0;
  };
  std::string small_;
  std::deque<large_message> large_;    // under way, round robin
  std::deque<large_message> waiting_;  // not started; beyond max_partial_messages
  // Changed only under the connection's mutex; atomic so that queued_bytes_unlocked()
  // may read it without.
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
