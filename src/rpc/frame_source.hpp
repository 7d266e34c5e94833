// The frame source: a connection's incoming bytes, after the preamble (and in key mode
// the handshake), turned into frames and whole messages.
//
// Threads: owned by the connection's loop thread, which alone calls every member; it
// takes no lock and holds no reference to the connection.
//
// Copies. A read lands in the stream's read buffer (io::duplex_stream); next() returns
// records that lie whole in that buffer as views into it, so a single-frame message
// (plain mode) is decoded straight from the read buffer into its fields: one copy after
// the kernel's. Only a record cut by the end of a read is copied (into the record
// reader, at most one record); in key mode each record is decrypted into one reused
// buffer, never zeroed first.
//
// Memory: that buffer grows to the largest record opened while records come; when a
// read's bytes are used up (next() returns need_more) a buffer larger than idle_keep (one
// small record's room) is let go of, so an idle connection holds at most idle_keep. A fragmented message is decoded as its fragments come, by the reassembler in
// decode mode: each fragment's bytes go straight into the message's fields, so it too
// is copied once after the read buffer.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "rpc/key_session.hpp"
#include "wire/frame.hpp"
#include "wire/reassembly.hpp"

namespace bokbok::rpc {

class frame_source {
 public:
  enum class status {
    need_more,  // every byte of `input` is used (held, if it began a record)
    frame,      // `f` is the next frame
    error,      // the stream is broken; error() says how; nothing more comes
  };

  // The decrypt buffer kept while idle (key mode): room for one small record.
  static constexpr std::size_t idle_keep = 2048;

  frame_source(std::size_t max_message_size, std::size_t max_open);

  // The next frame: from the bytes held, then from `input`, whose used bytes are
  // removed from its front. `key`, when set and ready, opens each record first (key
  // mode). `f.payload` stays valid until the next call to next() or keep(), and while
  // `input`'s memory is.
  status next(std::string_view& input, key_session* key, wire::frame_view& f) {
    return next_with(input, key ? &key->receive_cipher() : nullptr, f);
  }
  // The same with the receive cipher itself (`receive` null: plain).
  status next_with(std::string_view& input, crypto::record_cipher* receive, wire::frame_view& f);

  // Holds the rest of a read the caller stops handling part way (reading paused): the
  // next call to next() starts with it.
  void keep(std::string_view rest) { records_.keep(rest); }

  // After `error`: what broke, and whether it was a record that failed authentication
  // (key mode: nothing after it can be opened).
  const std::string& error() const { return error_; }
  bool forged() const { return forged_; }

  // Bytes held of a record begun but not yet whole (0: the last read ended between
  // records), for the connection's record_timeout and its report of a cut stream.
  std::size_t partial_record_bytes() const { return records_.buffered(); }

  // Bytes of the key-mode decrypt buffer held now, for tests and memory checks.
  std::size_t decrypt_bytes() const { return opened_size_; }

  // Request, response and notify frames go here to become whole messages (see
  // wire::reassembler::add: on complete, `whole` views a single-frame message's bytes
  // in `f`'s payload, to decode from there; a fragmented one comes decoded, from
  // messages().take_decoded()).
  wire::reassembler::status add_message(const wire::frame_view& f, std::string_view& whole,
                                        std::string& error) {
    return messages_.add(f, whole, error);
  }
  wire::reassembler& messages() { return messages_; }
  // Forgets every partial message (their memory goes), e.g. when the connection ends.
  void drop_messages(std::size_t max_message_size, std::size_t max_open) {
    messages_ = wire::reassembler(max_message_size, max_open, true);
  }

 private:
  wire::record_reader records_;
  wire::reassembler messages_;
  // Key mode: the frame decrypted from the last record, in a buffer of opened_size_.
  std::unique_ptr<char[]> opened_;
  std::size_t opened_size_ = 0;
  std::string error_;
  bool forged_ = false;
};

}  // namespace bokbok::rpc
