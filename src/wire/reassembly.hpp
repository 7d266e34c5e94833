// Reassembly of fragmented request and response messages (PROTOCOL.md §4.3).
// Pure code over bytes, no I/O. Not thread-safe: one per connection, on its loop thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>

#include "wire/frame.hpp"

namespace bokbok::wire {

class reassembler {
 public:
  enum class status {
    incomplete,  // fragment stored; more to come
    complete,    // `out` holds the whole message's bytes
    too_large,   // the message passed the limit: reported once per message, the rest of
                 // its fragments are then skipped (status skipped) and nothing is kept
    skipped,     // a fragment of a message already reported too_large (or dropped)
    error,       // protocol violation; `error` says which; the connection must close
  };

  // `max_message_size`: the most bytes one message may reach. `max_open`: the most
  // messages that may be partially received at once (a peer that opens more is in error).
  reassembler(std::size_t max_message_size, std::size_t max_open);

  // Takes one request, response or notify frame. A request whose first fragment has
  // flag_deadline: its 4-byte deadline prefix is not part of the message (nor of its size
  // limit); deadline_ms() gives it once the message is complete. Errors: a continued fragment of a message that
  // was never started ("fragment of unknown call"), a first fragment for a (type, id)
  // whose previous message is unfinished, more than max_open partial messages, a frame
  // of another type. A single-frame message never counts as open. A message being
  // skipped stays open (without its bytes) until its last fragment.
  status add(const frame_view& f, std::string& out, std::string& error);

  // Forgets a partial message (e.g. its call was cancelled): its bytes are released and
  // its later fragments skipped, up to its last. No effect if none is in progress.
  void drop(frame_type type, std::uint32_t call_id);

  // The deadline prefix (milliseconds left) of the message last returned as complete;
  // none when its first fragment had no flag_deadline.
  std::optional<std::uint32_t> deadline_ms() const { return deadline_; }

  void set_max_message_size(std::size_t n) { max_message_size_ = n; }
  std::size_t open_messages() const { return partial_.size(); }
  std::size_t buffered_bytes() const { return buffered_; }

 private:
  struct partial {
    std::string bytes;
    bool skipping = false;
    std::optional<std::uint32_t> deadline;
  };
  static std::uint64_t key(frame_type type, std::uint32_t id) {
    return (std::uint64_t(static_cast<std::uint8_t>(type)) << 32) | id;
  }
  std::size_t max_message_size_;
  std::size_t max_open_;
  std::size_t buffered_ = 0;
  std::optional<std::uint32_t> deadline_;
  std::unordered_map<std::uint64_t, partial> partial_;
};

}  // namespace bokbok::wire
