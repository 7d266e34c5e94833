// Reassembly of fragmented request and response messages (PROTOCOL.md §4.3).
// Pure code over bytes, no I/O. Not thread-safe: one per connection, on its loop thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>

#include "wire/frame.hpp"
#include "wire/message_codec.hpp"

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
  // `decode`: fragmented messages are decoded as their fragments come (see add()).
  reassembler(std::size_t max_message_size, std::size_t max_open, bool decode);

  // Takes one request, response or notify frame. A request whose first fragment has
  // flag_deadline: its 4-byte deadline prefix is not part of the message (nor of its size
  // limit); deadline_ms() gives it once the message is complete. Errors: a continued fragment of a message that
  // was never started ("fragment of unknown call"), a first fragment for a (type, id)
  // whose previous message is unfinished, more than max_open partial messages, a frame
  // of another type. A single-frame message never counts as open. A message being
  // skipped stays open (without its bytes) until its last fragment.
  //
  // On complete, `whole` views the message's bytes: a single-frame message's are in the
  // frame's own payload (no copy: the caller decodes from where the bytes were read); a
  // fragmented one's are in the reassembler's buffer, valid until the next add() or
  // drop(). That buffer is kept for the next fragmented message (up to
  // spare_buffer_limit bytes of capacity), so a stream of large messages reuses one
  // block rather than asking malloc for a fresh one (and glibc, for a large block, the
  // kernel) each time.
  status add(const frame_view& f, std::string_view& whole, std::string& error);
  //
  // Built with `decode`, a fragmented message is not put together as bytes: each
  // fragment is fed to a wire::message_decoder, which copies its bytes straight into
  // the message's fields (one copy after the read buffer's). On complete, `whole` is
  // then empty and take_decoded() gives the message; a malformed one is an error
  // ("bad request: ...", "bad response: ...", "bad notification: ...") as soon as that
  // is certain. buffered_bytes() then counts the decoders' cost() (reserved fields
  // included).
  // The same, with the message's bytes copied into `out` (tests, simple callers).
  status add(const frame_view& f, std::string& out, std::string& error);

  // Forgets a partial message (e.g. its call was cancelled): its bytes are released and
  // its later fragments skipped, up to its last. No effect if none is in progress.
  void drop(frame_type type, std::uint32_t call_id);

  // The deadline prefix (milliseconds left) of the message last returned as complete;
  // none when its first fragment had no flag_deadline.
  std::optional<std::uint32_t> deadline_ms() const { return deadline_; }
  // The fd count (flag_fds, PROTOCOL.md §13) of the first fragment last added: 0 when it
  // had no flag_fds. Read it right after add() of a first fragment; the fds themselves
  // are the caller's to take (they arrive beside the bytes).
  std::uint8_t first_fd_count() const { return fd_count_; }

  // After add() returned complete for a message decoded as it came (decode mode): true
  // once, and take_decoded() moves it out with its wire::decoded_cost-like cost.
  bool has_decoded() const { return has_decoded_; }
  message take_decoded(std::size_t& cost) {
    has_decoded_ = false;
    cost = decoded_cost_;
    return std::move(decoded_);
  }

  void set_max_message_size(std::size_t n) { max_message_size_ = n; }
  std::size_t open_messages() const { return partial_.size(); }
  std::size_t buffered_bytes() const { return buffered_; }
  // What one partial message holds (its decoder's cost, or its bytes); 0 if none.
  std::size_t message_bytes(frame_type type, std::uint32_t call_id) const;
  // Capacity held for reuse once no message is being reassembled (0 after a release).
  std::size_t spare_capacity() const { return spare_.capacity(); }
  // Lets go of the buffer kept for reuse (e.g. when the connection goes idle).
  void release_spare() { std::string().swap(spare_); }

  // The most capacity kept for reuse: a 1 MiB message's buffer, and its headers.
  static constexpr std::size_t spare_buffer_limit = 2 * 1024 * 1024;

 private:
  struct partial {
    std::string bytes;
    bool skipping = false;
    std::optional<std::uint32_t> deadline;
    std::optional<message_decoder> decoder;  // decode mode
  };
  status add_decoding(std::unordered_map<std::uint64_t, partial>::iterator it,
                      std::string_view payload, frame_type type, bool more,
                      std::string& error);
  static std::uint64_t key(frame_type type, std::uint32_t id) {
    return (std::uint64_t(static_cast<std::uint8_t>(type)) << 32) | id;
  }
  std::size_t max_message_size_;
  std::size_t max_open_;
  bool decode_ = false;
  std::size_t buffered_ = 0;
  bool has_decoded_ = false;
  message decoded_;
  std::size_t decoded_cost_ = 0;
  std::optional<std::uint32_t> deadline_;
  std::uint8_t fd_count_ = 0;
  std::string spare_;  // the last completed message's buffer, its capacity kept
  std::string done_;   // the message `whole` views after a fragmented complete
  std::string fresh_buffer();
  void recycle(std::string&& bytes);
  std::unordered_map<std::uint64_t, partial> partial_;
};

}  // namespace bokbok::wire
