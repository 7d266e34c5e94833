// The spawned-child transport of `bokbok bench`, and the spawn latency figure.
//
// The echo peer is another process: this very program re-run as
// `bokbok bench --echo-peer raw|bokbok|bokbok-inline`, talking over its stdin/stdout.
// The raw baseline spawns it with the same pipes and the same spawner that exec: uses
// and runs the blocking length-prefixed echo; bokbok connects with an exec: address.
// Both children are the same binary, so both pay the same exec and dynamic loading.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "bench.hpp"
#include "command.hpp"

namespace bokbok::tools::bench {
namespace {

std::string self_path() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

std::vector<std::string> peer_argv(std::string_view kind) {
  return {self_path(), "bench", "--echo-peer", std::string(kind)};
}

// A raw echo child: its stdout and stdin are the caller's ends of the link.
fd_link child_fds() {
  channel_options o;
  o.child.grace = std::chrono::seconds(2);
  fd_link link;
  server_side_scope on_server;  // the child inherits the server CPU
  // The child is released (and reaped in the background) when link.caller is closed.
  link.caller = open_byte_channel(address::exec(peer_argv("raw")), o);
  return link;
}

bokbok_pair child_bokbok(const options& caller, const options& peer) {
  auto argv = peer_argv(peer.inline_handlers ? "bokbok-inline" : "bokbok");
  server_side_scope on_server;  // connect spawns the child here: it inherits the server CPU
  return {connect(address::exec(argv).to_string(), caller), std::nullopt};
}

double micros_since(clock_type::time_point start) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - start).count();
}

}  // namespace

const transport child_transport = {"child", child_fds, child_bokbok};

int serve_echo_peer(std::string_view kind) {
  if (kind == "raw") {
    run_raw_echo_peer(STDIN_FILENO, STDOUT_FILENO);
    return 0;
  }
  if (kind != "bokbok" && kind != "bokbok-inline")
    throw usage_error("--echo-peer wants raw, bokbok or bokbok-inline");
  options o;
  o.on_request = [](connection&, message request) { return request; };
  o.inline_handlers = kind == "bokbok-inline";
  serve_stdio(o);
  return 0;
}

spawn_result measure_spawn(const settings& s) {
  spawn_result r;
  const std::size_t max_spawns = s.figure_time.count() < 1 ? 10 : 50;
  const std::string payload(s.tiny_size, 'x');
  const std::string peer_address = address::exec(peer_argv("bokbok")).to_string();
  auto end = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(s.figure_time);
  while (r.raw_micros.size() < max_spawns && (r.raw_micros.size() < 3 || clock_type::now() < end)) {
    {
      auto start = clock_type::now();
      auto echo = open_raw_echo(child_fds());
      std::string p = payload;
      echo->round_trip(p);
      r.raw_micros.push_back(micros_since(start));
      if (p != payload) throw check_failed("raw child echo: wrong answer");
    }  // closes the pipes; the child exits and is reaped in the background
    {
      auto start = clock_type::now();
      connection c = [&] {
        server_side_scope on_server;  // the child inherits the server CPU
        return connect(peer_address);
      }();
      message m = c.request({payload});
      r.bokbok_micros.push_back(micros_since(start));
      if (m != message{payload}) throw check_failed("bokbok child echo: wrong answer");
      c.close();
      c.wait_closed();
    }
  }
  return r;
}

}  // namespace bokbok::tools::bench
