// Test support: a raw plain-mode bokbok client on a UNIX socket, for hostile-peer tests
// that send exactly the bytes they choose (src/wire/PROTOCOL.md) and read frames back.
// On connecting it sends its preamble and hello; the server's preamble and hello are
// skipped by next_frame(). Every wait is bounded by a time limit. One thread at a time.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <doctest/doctest.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "base/unique_fd.hpp"
#include "bokbok/message.hpp"
#include "support/raw_socket.hpp"
#include "wire/frame.hpp"
#include "wire/message_codec.hpp"
#include "wire/preamble.hpp"
#include "wire/settings.hpp"

namespace bokbok_test {

// One frame as read, its payload copied.
struct raw_frame {
  bokbok::wire::frame_type type;
  std::uint8_t flags;
  std::uint32_t call_id;
  std::string payload;
};

// One record holding one frame (no flags).
inline std::string frame_record(bokbok::wire::frame_type t, std::uint32_t id, std::string_view payload) {
  std::string r;
  bokbok::wire::append_frame(r, t, 0, id, payload);
  return r;
}

// A plain client's first bytes: its preamble, then a hello announcing every feature this
// build supports.
inline std::string plain_greeting() {
  namespace wire = bokbok::wire;
  wire::settings s;
  s.features = wire::features_supported;
  return wire::encode_preamble({1, wire::mode::plain, ""}) +
         frame_record(wire::frame_type::hello, 0, wire::encode_settings(s));
}

// The records of a whole request `m` with call id `id`, fragmented as a sender must.
inline std::string request_bytes(std::uint32_t id, const bokbok::message& m) {
  std::string body, out;
  bokbok::wire::encode_message(m, body);
  bokbok::wire::append_message_frames(out, bokbok::wire::frame_type::request, id, body);
  return out;
}

// The records of a response `m` to the peer's request `id`.
inline std::string response_bytes(std::uint32_t id, const bokbok::message& m) {
  std::string body, out;
  bokbok::wire::encode_message(m, body);
  bokbok::wire::append_message_frames(out, bokbok::wire::frame_type::response, id, body);
  return out;
}

class raw_peer {
 public:
  // Connects to the UNIX socket at `path` and sends the preamble and a hello announcing
  // every feature this build supports.
  explicit raw_peer(const std::string& path) : raw_peer(connect_unix(path)) {}
  // The same on a socket already connected (one end of a socketpair), which it owns.
  explicit raw_peer(bokbok::base::unique_fd fd) : fd_(std::move(fd)) {
    REQUIRE(write_all(fd_.get(), plain_greeting()));
  }

  int fd() const { return fd_.get(); }

  // Writes all of `bytes`, blocking; false if the server closed the connection.
  bool send(std::string_view bytes) { return write_all(fd_.get(), bytes); }

  // Writes as much of `bytes` as the server takes within `limit` (it may stop reading:
  // backpressure); the count of bytes written. Stops early if the connection is gone.
  std::size_t send_within(std::string_view bytes, std::chrono::milliseconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      ssize_t n = ::send(fd_.get(), bytes.data() + sent, bytes.size() - sent,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += std::size_t(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_.get(), POLLOUT, 0};
      ::poll(&p, 1, int(left.count()));
    }
    return sent;
  }

  // The next frame from the server after its preamble and hello, within `limit`;
  // nullopt when none came in time, the stream ended, or its bytes are not bokbok
  // (then error() says why).
  std::optional<raw_frame> next_frame(std::chrono::milliseconds limit) {
    namespace wire = bokbok::wire;
    const auto end = std::chrono::steady_clock::now() + limit;
    for (;;) {
      std::string_view body;
      if (preamble_done_) {
        auto st = records_.next(body);
        if (st == wire::record_reader::status::error) {
          error_ = records_.error();
          return std::nullopt;
        }
        if (st == wire::record_reader::status::record) {
          wire::frame_view f{};
          if (!wire::parse_frame(body, f, error_)) return std::nullopt;
          if (f.type == wire::frame_type::hello) continue;
          return raw_frame{f.type, f.flags, f.call_id, std::string(f.payload)};
        }
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, int(left.count())) <= 0) continue;  // the time is checked above
      char buf[64 << 10];
      ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        error_ = "the server closed the connection";
        return std::nullopt;
      }
      std::string_view got(buf, std::size_t(n));
      std::string_view in = got;
      if (!preamble_done_) {
        auto st = preamble_.feed(in);
        if (st == wire::preamble_reader::status::error) {
          error_ = preamble_.error();
          return std::nullopt;
        }
        preamble_done_ = st == wire::preamble_reader::status::done;
      }
      if (!in.empty()) records_.feed(in);
    }
  }

  const std::string& error() const { return error_; }

 private:
  bokbok::base::unique_fd fd_;
  bokbok::wire::preamble_reader preamble_;
  bool preamble_done_ = false;
  bokbok::wire::record_reader records_;
  std::string error_;
};

// Opens `messages` requests on `peer` (ids first_id...), each fed round-robin a fragment
// at a time (as bokbok's own sender does) until each has carried `each` bytes; never
// finishes any. Bounded by `limit`; false if not all was written in time.
inline bool open_partials(raw_peer& peer, std::uint32_t first_id, unsigned messages,
                          std::size_t each, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  const std::string chunk(bokbok::wire::max_frame_payload, 'x');
  std::string batch;
  for (std::size_t sent = 0; sent < each; sent += chunk.size()) {
    batch.clear();
    for (unsigned m = 0; m < messages; ++m) {
      std::uint8_t flags = bokbok::wire::flag_more | (sent ? bokbok::wire::flag_continued : 0);
      // A well-formed beginning (one field of the rest of the message's bytes): a
      // malformed one would be refused at its first fragment, before any budget.
      std::string first = chunk;
      if (!sent) {
        const auto rest = static_cast<std::uint32_t>(each - 8);
        const char head[8] = {0, 0, 0, 1, char(rest >> 24), char(rest >> 16), char(rest >> 8),
                              char(rest)};
        first.replace(0, 8, std::string(head, 8));
      }
      bokbok::wire::append_frame(batch, bokbok::wire::frame_type::request, flags, first_id + m,
                         sent ? chunk : first);
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0 || peer.send_within(batch, left) != batch.size()) return false;
  }
  return true;
}

}  // namespace bokbok_test
