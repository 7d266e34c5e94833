// The raw baseline of `bokbok bench`: the physical limit of a transport for a blocking
// request/response echo. Each message is `u32 length (host order) ‖ bytes`; the caller
// writes a whole message, then reads exactly one back; the peer thread reads a message
// and writes it back. No framing beyond the length, no threads besides the peer, one
// writev per message. It cannot multiplex: one caller at a time. It can pipeline: write
// several requests, then read their replies in order (measure_pipelined).
#include <pthread.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>

#include "bench.hpp"

namespace bokbok::tools::bench {
namespace {

// Reads exactly n bytes. Returns false on EOF before the first byte; throws on an error
// or on EOF in the middle.
bool read_exact(int fd, void* buf, std::size_t n) {
  auto* p = static_cast<char*>(buf);
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, p + got, n - got);
    if (r > 0) {
      got += std::size_t(r);
    } else if (r == 0) {
      if (got == 0) return false;
      throw check_failed("raw echo: stream ended in the middle of a message");
    } else if (errno != EINTR) {
      throw std::system_error(errno, std::generic_category(), "raw echo: read");
    }
  }
  return true;
}

// Writes `length ‖ body` completely.
void write_message(int fd, const std::string& body) {
  std::uint32_t length = std::uint32_t(body.size());
  iovec iov[2] = {{&length, sizeof length},
                  {const_cast<char*>(body.data()), body.size()}};
  iovec* v = iov;
  int count = 2;
  while (count > 0) {
    ssize_t r = ::writev(fd, v, count);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "raw echo: write");
    }
    auto done = std::size_t(r);
    while (count > 0 && done >= v->iov_len) {
      done -= v->iov_len;
      ++v;
      --count;
    }
    if (count > 0) {
      v->iov_base = static_cast<char*>(v->iov_base) + done;
      v->iov_len -= done;
    }
  }
}

// Reads one message into `body`. False on a clean EOF between messages.
bool read_message(int fd, std::string& body) {
  std::uint32_t length = 0;
  if (!read_exact(fd, &length, sizeof length)) return false;
  body.resize(length);
  if (!read_exact(fd, body.data(), length))
    throw check_failed("raw echo: stream ended after a length");
  return true;
}

// The peer: echoes until EOF or an error (the caller sees either as a failed read).
void echo_peer(int read_fd, int write_fd) {
  pthread_setname_np(pthread_self(), "bench-peer");  // for check_placement()
  std::string body;
  try {
    while (read_message(read_fd, body)) write_message(write_fd, body);
  } catch (const std::exception&) {
    // The caller is gone or broke the stream; it reports the problem, if any.
  }
}

class raw_echo final : public echo_client {
 public:
  explicit raw_echo(fd_link link) : caller_(std::move(link.caller)) {
    if (link.peer.is_open()) {
      server_side_scope on_server;  // the peer thread inherits the server CPU
      peer_ = std::thread([peer = std::move(link.peer)] {  // closed when the peer ends
        echo_peer(peer.read_fd(), peer.write_fd());
      });
    }
  }

  ~raw_echo() override {
    // Closing both of our ends ends the peer: its read sees EOF, or its write EPIPE.
    caller_.close();  // a child caller_ leads to is released (and reaped) too
    if (peer_.joinable()) peer_.join();
  }

  void round_trip(std::string& payload) override {
    write_message(caller_.write_fd(), payload);
    if (!read_message(caller_.read_fd(), scratch_))
      throw check_failed("raw echo: the peer closed the stream");
    payload.swap(scratch_);
  }

  bool concurrent() const override { return false; }

  bool pipelines() const override { return true; }
  void send_request(const std::string& payload) override {
    write_message(caller_.write_fd(), payload);
  }
  void receive_response(std::string& payload) override {
    if (!read_message(caller_.read_fd(), payload))
      throw check_failed("raw echo: the peer closed the stream");
  }

 private:
  endpoint caller_;
  std::thread peer_;
  std::string scratch_;
};

}  // namespace

void run_raw_echo_peer(int in_fd, int out_fd) {
  echo_peer(in_fd, out_fd);
}

std::unique_ptr<echo_client> open_raw_echo(fd_link link) {
  return std::make_unique<raw_echo>(std::move(link));
}

}  // namespace bokbok::tools::bench
