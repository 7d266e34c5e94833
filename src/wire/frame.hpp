// Records and frames (PROTOCOL.md §3-§4). Pure code over bytes, no I/O.
//
// A record is `u16 length (big-endian) || body`, 1..65535 bytes of body. In plain mode a
// record's body is exactly one frame: `u8 type || u8 flags || u32 call id (BE) || payload`.
// (Key mode, added later, encrypts the frame inside the body; the record shape stays.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace bokbok::wire {

inline constexpr std::size_t record_header_size = 2;
inline constexpr std::size_t max_record_body = 65535;
inline constexpr std::size_t frame_header_size = 6;
// Room kept in every record for an AEAD tag, so plain and key mode cut messages alike.
inline constexpr std::size_t record_overhead_reserved = 16;
inline constexpr std::size_t max_frame_payload =
    max_record_body - record_overhead_reserved - frame_header_size;  // 65513
static_assert(max_frame_payload == 65513);
inline constexpr std::size_t max_ping_payload = 8;
// The most messages one side may have partly sent at once (first fragment sent, last not
// yet), requests and responses together (PROTOCOL.md §4.3): a sender keeps to it, a
// receiver gives it to its reassembler as `max_open`.
inline constexpr std::size_t max_partial_messages = 16;

enum class frame_type : std::uint8_t {
  hello = 1,     // call id 0; payload: settings (settings.hpp)
  request = 2,   // call id: the sender's id for the call; payload: message bytes (fragment)
  response = 3,  // call id: the receiver's request id; payload: message bytes (fragment)
  error = 4,     // call id: the receiver's request id; payload: u16 code || UTF-8 text
  cancel = 5,    // call id: the sender's request id; empty payload
  ping = 6,      // call id 0; payload: 0..8 opaque bytes, echoed by pong
  pong = 7,      // call id 0; payload: the ping's bytes
  goaway = 8,    // call id: last peer request id that will be answered; payload: u16 code || text
  close = 9,     // call id 0; empty payload; the last frame a side sends
  notify = 10,   // call id: the sender's notification id; payload: message bytes (fragment);
                 // never answered (only when both sides set feature_notify)
  // Streams (PROTOCOL.md §12; only when both sides set feature_stream):
  stream = 11,        // call id: the sender's (requester's) id; payload: a fragment of a
                      // message of the requester's stream
  reply_stream = 12,  // call id: the receiver's request id; payload: a fragment of a
                      // message of the responder's stream
  stream_end = 13,    // call id: the sender's (requester's) id; empty: its stream is over
  credit = 14,        // call id: the sender's (requester's) id; payload: u32 messages ||
                      // u32 bytes more the responder may send on its stream
  reply_credit = 15,  // call id: the receiver's request id; payload: as credit, more the
                      // requester may send on its stream
};

// flags
inline constexpr std::uint8_t flag_more = 0x01;       // more fragments of this message follow
inline constexpr std::uint8_t flag_continued = 0x02;  // not the first fragment
// On the first fragment of a request (feature_deadline): the payload starts with a u32
// count of milliseconds left before the call's deadline; the message bytes follow.
inline constexpr std::uint8_t flag_deadline = 0x04;
// On the first fragment of a request (feature_stream): the call carries a stream of
// messages in either direction or both (PROTOCOL.md §12).
inline constexpr std::uint8_t flag_stream = 0x08;
// On the first fragment of a message (request, response, notify, stream, reply_stream;
// feature_fds): the payload starts, after the deadline prefix if any, with a u8 count
// (1..253) of file descriptors that travel with the message (PROTOCOL.md §13).
inline constexpr std::uint8_t flag_fds = 0x10;
inline constexpr std::uint8_t known_flags =
    flag_more | flag_continued | flag_deadline | flag_stream | flag_fds;
inline constexpr std::size_t deadline_prefix_size = 4;
inline constexpr std::size_t fds_prefix_size = 1;
// SCM_MAX_FD: the most descriptors Linux passes in one control message.
inline constexpr std::size_t max_fds_per_message = 253;
inline constexpr std::size_t credit_payload_size = 8;

struct frame_view {
  frame_type type;
  std::uint8_t flags;
  std::uint32_t call_id;
  std::string_view payload;  // points into the record body it was parsed from
};

// Appends one record holding one frame to `out` (header, then payload). `payload` must
// be at most max_frame_payload bytes.
void append_frame(std::string& out, frame_type type, std::uint8_t flags,
                  std::uint32_t call_id, std::string_view payload);

// The 8 bytes (record header + frame header) that precede a payload of `payload_size`
// bytes; used to send a large payload slice by slice without copying it.
struct frame_header_bytes {
  unsigned char bytes[record_header_size + frame_header_size];
};
frame_header_bytes encode_frame_header(frame_type type, std::uint8_t flags,
                                       std::uint32_t call_id, std::size_t payload_size);

// The flags of the fragment that starts at byte `offset` of a `total`-byte message
// (PROTOCOL.md §4.3): flag_continued unless offset is 0, flag_more unless the fragment
// (at most max_frame_payload bytes) reaches the end.
std::uint8_t fragment_flags(std::size_t offset, std::size_t total);

// The u32 milliseconds of a deadline prefix (`payload` at least 4 bytes).
std::uint32_t get_deadline_prefix(std::string_view payload);
void put_deadline_prefix(std::string& out, std::uint32_t ms);

// One fragment of a message (PROTOCOL.md §4.3): the record and frame header that go in
// front of it, and how many of the message's bytes it carries.
struct fragment {
  frame_header_bytes header;
  std::size_t size;
};

// The fragment of a `total`-byte message payload that starts at byte `offset` (less than
// `total`, or 0 for an empty message): max_frame_payload bytes or the rest, flagged per
// fragment_flags(), with `first_flags` added on the first fragment only (flag_deadline,
// when the payload starts with a deadline prefix). The one place a sender cuts messages:
// append_message_frames() and the RPC layer's outbox both call it.
fragment message_fragment(frame_type type, std::uint32_t call_id, std::size_t offset,
                          std::size_t total, std::uint8_t first_flags = 0);

// Appends the records carrying one whole message of `type` (request, response, notify): its
// bytes cut into fragments by message_fragment(). An empty `message_bytes` gives one frame
// with an empty payload. With `first_flags` = flag_deadline, `message_bytes` is the
// deadline prefix followed by the message.
void append_message_frames(std::string& out, frame_type type, std::uint32_t call_id,
                           std::string_view message_bytes, std::uint8_t first_flags = 0);

// What the first fragment of a message carries before the message bytes (flag_deadline,
// then flag_fds): parse_frame has checked that the payload holds it.
struct first_prefix {
  std::uint32_t deadline_ms = 0;  // when flag_deadline
  std::uint8_t fd_count = 0;      // when flag_fds: 1..253
  std::size_t size = 0;           // bytes of prefix to skip
};
first_prefix parse_first_prefix(std::uint8_t flags, std::string_view payload);

// CREDIT and REPLY_CREDIT payloads: `u32 messages || u32 bytes`, a grant added to what
// the writer of the stream may send.
struct credit_grant {
  std::uint32_t messages = 0;
  std::uint32_t bytes = 0;
};
std::string encode_credit_payload(credit_grant g);
// `payload` must be credit_payload_size bytes (parse_frame checks that).
credit_grant parse_credit_payload(std::string_view payload);

// True for the frame types that carry message fragments (request, response, notify,
// stream, reply_stream).
bool carries_message(frame_type t) noexcept;

// ERROR and GOAWAY payloads: `u16 code || UTF-8 text`. Encoding cuts the text to fit one
// frame, at a UTF-8 character boundary (never inside a multi-byte character).
std::string encode_code_payload(std::uint16_t code, std::string_view text);
// Appends one ERROR or GOAWAY record whose payload is encode_code_payload(code, text),
// built in place in `out` (no temporary payload string).
void append_code_frame(std::string& out, frame_type type, std::uint32_t call_id,
                       std::uint16_t code, std::string_view text);
struct code_payload {
  std::uint16_t code;
  std::string_view text;  // points into the payload; not checked to be UTF-8
};
// `payload` must be at least 2 bytes (parse_frame checks that for error and goaway).
code_payload parse_code_payload(std::string_view payload);

// Parses one record body as a frame. Rules checked (each with its own message, PROTOCOL.md
// §4.2): body at least frame_header_size bytes; type known; no unknown flags;
// flag_more / flag_continued only on the message types (carries_message);
// flag_deadline and flag_stream only on a request without flag_continued; flag_fds only
// on a message type without flag_continued, with a count of 1..253; the payload holds
// the whole prefix the flags announce; call id 0 exactly for hello, ping, pong and close,
// and nonzero for every other type but goaway (any); payload at most max_frame_payload
// bytes; ping and pong payload at most 8 bytes; error and goaway payload at least 2
// bytes; cancel, close and stream_end payload empty; credit and reply_credit payload
// exactly 8 bytes. The feature bits are not checked here: a receiver checks its own
// (PROTOCOL.md §6.2). Returns false and sets `error` when a rule fails.
bool parse_frame(std::string_view body, frame_view& out, std::string& error);

// Incremental record splitter: feed bytes as they arrive, take records out one by one.
//
// Two ways to feed it. next(input, body) takes records straight out of the caller's
// bytes (a read buffer): a record that lies whole in `input` is returned as a view into
// it, with no copy; only a record cut by the end of one read is copied, up to its end,
// into the reader's own buffer (at most one record, 65537 bytes). feed() plus next(body)
// copies everything first (simple callers, tests). keep() parks input the caller will
// not handle now (reading paused): the next next() call returns it first.
class record_reader {
 public:
  enum class status { need_more, record, error };

  // Appends bytes to the internal buffer. Memory held is at most one record plus the
  // bytes fed (or kept) since the last next() that returned need_more.
  void feed(std::string_view bytes);
  // The same as feed(): the rest of a read the caller stops handling part way.
  void keep(std::string_view rest) { feed(rest); }

  // Takes the next complete record from the bytes held, then from `input`, whose used
  // bytes are removed from its front. On `record`, `body` views the record's body (in
  // `input`'s memory or the reader's) and stays valid until the next call to feed(),
  // keep() or next(), and while `input`'s memory is. On `need_more`, `input` is empty:
  // its bytes (a record's beginning) are held. A zero length is an error.
  status next(std::string_view& input, std::string_view& body);
  // next() over the bytes held only.
  status next(std::string_view& body) {
    std::string_view none;
    return next(none, body);
  }

  const std::string& error() const { return error_; }
  std::size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::string buf_;
  std::size_t pos_ = 0;
  std::string error_;
};

const char* to_string(frame_type t) noexcept;  // "hello", ...; "unknown" otherwise

}  // namespace bokbok::wire
