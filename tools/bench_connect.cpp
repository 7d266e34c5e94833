// `bokbok bench`, connection set-up under concurrency: 4 client threads each opening a
// connection to one server over a UNIX socket, making one tiny call and closing, again
// and again. bokbok (a bokbok::server, plain or key mode, clients via bokbok::connect)
// against the raw baseline (a listener thread that accepts, echoes one length-prefixed
// message and closes; clients that connect, write, read, close). Both in this process;
// the server side starts on the server CPU when pinned (--pin split).
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench.hpp"

namespace bokbok::tools::bench {
namespace {

constexpr unsigned connect_clients = 4;
constexpr std::size_t max_connects = 200'000;  // a bound on the figure, whatever the speed

// Runs `one` (open, call, close) from connect_clients threads until the figure's time is
// up; connections per second.
template <typename Fn>
double run_clients(const settings& s, Fn one) {
  std::atomic<std::size_t> done{0};
  std::atomic<bool> failed{false};
  std::string why;
  std::mutex why_mu;
  auto start = clock_type::now();
  auto end = start + std::chrono::duration_cast<clock_type::duration>(s.figure_time);
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < connect_clients; ++i) {
    threads.emplace_back([&] {
      try {
        while (!failed && done < max_connects && (done < 10 || clock_type::now() < end)) {
          one();
          ++done;
        }
      } catch (const std::exception& e) {
        std::lock_guard lock(why_mu);
        if (!failed.exchange(true)) why = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  if (failed) throw check_failed("connects/s: " + why);
  return double(done) / std::chrono::duration<double>(clock_type::now() - start).count();
}

// ---- raw -----------------------------------------------------------------------------

bool read_all(int fd, char* p, std::size_t n) {
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

double raw_connect_rate(const settings& s) {
  socklen_t len = 0;
  sockaddr_un addr = abstract_address(unique_name("raw"), len);
  // Each descriptor is owned by an endpoint (a byte_channel), which closes it.
  const int listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const endpoint listener(listen_fd, listen_fd);
  if (listen_fd < 0 || ::bind(listen_fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      ::listen(listen_fd, 128) != 0)
    throw std::runtime_error(std::string("raw listener: ") + std::strerror(errno));
  const std::size_t msg = 4 + s.tiny_size;
  std::thread acceptor;
  {
    server_side_scope on_server;  // the accepting thread inherits the server CPU
    acceptor = std::thread([&, fd = listen_fd] {
      std::vector<char> buf(msg);
      for (;;) {
        const int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) {
          if (errno == EINTR || errno == ECONNABORTED) continue;
          return;  // shutdown() of the listener ends the loop
        }
        const endpoint accepted(c, c);
        if (read_all(c, buf.data(), msg)) write_all(c, buf.data(), msg);
      }
    });
  }
  double rate = 0;
  try {
    rate = run_clients(s, [&] {
      const int c = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      const endpoint client(c, c);
      std::string out(msg, 'x'), in(msg, '\0');
      if (c < 0 || ::connect(c, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
          !write_all(c, out.data(), msg) || !read_all(c, in.data(), msg))
        throw check_failed(std::string("raw connect and echo: ") + std::strerror(errno));
      if (in != out) throw check_failed("raw connect and echo: wrong answer");
    });
  } catch (...) {
    ::shutdown(listen_fd, SHUT_RDWR);
    acceptor.join();
    throw;
  }
  ::shutdown(listen_fd, SHUT_RDWR);
  acceptor.join();
  return rate;
}

// ---- bokbok --------------------------------------------------------------------------

double bokbok_connect_rate(const settings& s, bool keys) {
  options client, peer;
  if (keys) use_bench_keys(client, peer);
  server_options so;
  std::string address = "unix:@" + unique_name(keys ? "key" : "plain");
  so.listen = {address};
  so.on_request = [](connection&, message request) { return request; };
  so.keys = peer.keys;
  server srv(so);
  {
    server_side_scope on_server;  // the server's threads inherit the server CPU
    srv.start();
  }
  double rate = run_clients(s, [&] {
    connection c = connect(address, client);
    message request{std::string(s.tiny_size, 'x')};
    message response = c.request(request);
    if (response != request) throw check_failed("bokbok connect and echo: wrong answer");
    c.close();
    c.wait_closed();
  });
  check_connect_placement();  // the server and the clients' loop are still there
  srv.stop(std::chrono::seconds(5));
  srv.wait();
  return rate;
}

}  // namespace

std::string unique_name(const char* what) {
  static std::atomic<unsigned> n{0};
  return std::string("bokbok-bench-") + what + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(n++);
}

sockaddr_un abstract_address(const std::string& name, socklen_t& len) {
  sockaddr_un a{};
  if (name.size() > sizeof a.sun_path - 1)  // (--idle-server takes it from the command line)
    throw usage_error("a UNIX socket name of " + std::to_string(name.size()) +
                      " bytes is too long (at most " + std::to_string(sizeof a.sun_path - 1) +
                      "): " + name);
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path + 1, name.data(), name.size());
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  return a;
}

connect_rates measure_connect_rates(const settings& s) {
  connect_rates r;
  r.raw = raw_connect_rate(s);
  r.plain = bokbok_connect_rate(s, false);
  r.keyed = bokbok_connect_rate(s, true);
  return r;
}

}  // namespace bokbok::tools::bench
