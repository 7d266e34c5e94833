// `bokbok call --stream` (call_stream.hpp): the input thread and the printing loop.
#include "call_stream.hpp"

#include <poll.h>
#include <unistd.h>

#include <bokbok/bokbok.hpp>

#include <memory>
#include <cerrno>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

#include "call_input.hpp"
#include "call_output.hpp"
#include "command.hpp"  // tools::usage_error, which -d's JSON parser throws

namespace bokbok::tools::call {
namespace {

// The line as the message to send (see call_stream.hpp); nullopt for a blank --json line.
std::optional<message> line_message(std::string line, bool json) {
  if (!json) return message{std::move(line)};
  if (line.find_first_not_of(" \t\r") == std::string::npos) return std::nullopt;
  return to_fields(parse_json_args(line), nullptr, "--stream input");
}

// Reads standard input and writes it to the stream, one message per line, until end of
// input (then close_write), until `stop` is readable (the call is over), or until the
// stream refuses (the answer came first: the rest of the input is not sent). A usage
// error (a bad --json line) is kept in `failure` and the call cancelled.
class input_pump {
 public:
  input_pump(stream s, bool json) : s_(std::move(s)), json_(json) {
    if (::pipe(stop_) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
    thread_ = std::thread([this] { run(); });
  }
  ~input_pump() {
    (void)!::write(stop_[1], "x", 1);
    thread_.join();
    ::close(stop_[0]);
    ::close(stop_[1]);
  }
  // The usage error the input caused, if any (after the call is over).
  std::optional<std::string> failure() {
    std::lock_guard lock(mutex_);
    return failure_;
  }

 private:
  void run() {
    std::string pending;
    char buf[65536];
    try {
      for (;;) {
        pollfd fds[2] = {{0, POLLIN, 0}, {stop_[0], POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
          if (errno == EINTR) continue;
          break;
        }
        if (fds[1].revents) return;  // the call is over
        ssize_t r = ::read(0, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;  // end of input (or an error reading it: end the stream)
        pending.append(buf, std::size_t(r));
        std::size_t start = 0;
        for (std::size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1)
          send(pending.substr(start, nl - start));
        pending.erase(0, start);
      }
      if (!pending.empty()) send(std::move(pending));  // a last line without "\n"
      s_.close_write();
    } catch (const usage_error& e) {
      {
        std::lock_guard lock(mutex_);
        failure_ = e.what();
      }
      s_.cancel();
    } catch (const std::exception&) {
      // The stream refused: the call is over (answered, failed, cancelled); the reading
      // side reports how.
    }
  }
  void send(std::string line) {
    if (auto m = line_message(std::move(line), json_)) s_.write(std::move(*m));
  }

  stream s_;
  bool json_;
  int stop_[2] = {-1, -1};
  std::mutex mutex_;
  std::optional<std::string> failure_;
  std::thread thread_;
};

void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t r = ::write(fd, bytes.data(), bytes.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "writing the output");
    }
    bytes.remove_prefix(std::size_t(r));
  }
}

std::string format_stream_message(const message& m, bool json) {
  if (!json) return format_lines(m);
  std::string line = format_json(m);  // "[...]\n"
  line.pop_back();
  return "{\"stream\": " + line + "}\n";
}

}  // namespace

message run_stream(stream& s, const stream_io& io,
                   std::optional<std::chrono::steady_clock::time_point> deadline) {
  std::unique_ptr<input_pump> input;
  if (io.send_input)
    input = std::make_unique<input_pump>(s, io.json);
  else
    s.close_write();
  for (;;) {
    std::optional<message> m;
    try {
      m = deadline ? s.read(*deadline) : s.read();
    } catch (...) {
      if (input) {
        auto bad = input->failure();
        input.reset();
        if (bad) throw usage_error(*bad);
      }
      throw;
    }
    if (!m) break;
    try {
      write_all(io.out_fd, format_stream_message(*m, io.json));
    } catch (...) {
      s.cancel();
      throw;
    }
  }
  message answer = s.finish();
  input.reset();
  return answer;
}

}  // namespace bokbok::tools::call
