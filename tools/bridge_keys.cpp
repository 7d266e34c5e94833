// `bokbok bridge` with keys (--users, --user/--key-file): a bridge that ends key mode on
// one side instead of relaying bytes. It speaks bokbok to both sides and passes each
// message on: requests both ways (answers and remote errors come back, with their
// codes), notifications both ways, deadlines (a forwarded call inherits the caller's).
// --users FILE: side A accepts key-mode clients (authenticated users of FILE);
// --user NAME --key-file FILE: side B is reached in key mode as NAME. Each side without
// keys speaks plain mode. Use: expose a plain local server to authenticated clients over
// ssh or stdio, or reach a key-mode server from a plain client.
//
// Threads: the library's. Forwarded requests run on handler threads of the side they
// arrived on and wait for the other side (a nested call gives up its slot while it
// waits); when either side closes, the other is closed too.
// Ownership: run_key_bridge owns the shared state, which holds both connections; the
// handlers, which each connection holds, reach it through a weak_ptr. A shared_ptr there
// would be a cycle (state -> connection -> handler -> state), and both connections would
// never be freed (LeakSanitizer reported it on every bridge run).
#include "bridge_keys.hpp"

#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>

#include "bokbok/bokbok.hpp"
#include "command.hpp"
#include "trace_option.hpp"

namespace bokbok::tools {

namespace {

struct shared_state {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<connection> a, b;
  bool ended = false;
  std::string why;
};

// Passes a request from one side to the other; what the other answers, or the error
// it raises, goes back.
request_handler forward_to(std::weak_ptr<shared_state> weak, bool to_b) {
  return [weak, to_b](connection&, message m) -> message {
    auto st = weak.lock();
    if (!st) throw remote_error(error_code::shutting_down, "the bridge is closing");
    std::optional<connection> other;
    {
      std::unique_lock lock(st->mu);
      st->cv.wait(lock, [&] { return (to_b ? st->b : st->a).has_value() || st->ended; });
      other = to_b ? st->b : st->a;
    }
    if (!other) throw remote_error(error_code::shutting_down, "the bridge is closing");
    return other->request(std::move(m));
  };
}

notify_handler notify_to(std::weak_ptr<shared_state> weak, bool to_b) {
  return [weak, to_b](connection&, message m) {
    auto st = weak.lock();
    if (!st) return;
    std::optional<connection> other;
    {
      std::lock_guard lock(st->mu);
      other = to_b ? st->b : st->a;
    }
    if (other) other->notify(std::move(m));
  };
}

close_handler end_bridge(std::weak_ptr<shared_state> weak, const char* side) {
  return [weak, side](connection& c) {
    auto st = weak.lock();
    if (!st) return;  // the bridge has returned, both sides closed
    std::optional<connection> a, b;
    {
      std::lock_guard lock(st->mu);
      if (!st->ended) st->why = std::string(side) + ": " + c.close_reason();
      st->ended = true;
      a = st->a;
      b = st->b;
      st->cv.notify_all();
    }
    if (a) a->close();
    if (b) b->close();
  };
}

}  // namespace

int run_key_bridge(const std::string& address_a, const std::string& address_b,
                   const bridge_keys& keys) {
  auto st = std::make_shared<shared_state>();
  options oa, ob;
  oa.on_request = forward_to(st, true);
  oa.on_notify = notify_to(st, true);
  oa.on_close = end_bridge(st, "A");
  ob.on_request = forward_to(st, false);
  ob.on_notify = notify_to(st, false);
  ob.on_close = end_bridge(st, "B");
  if (!keys.users_file.empty()) oa.keys.key_for_user = load_users(keys.users_file);
  if (!keys.user.empty()) {
    ob.keys.user = keys.user;
    ob.keys.key = std::make_shared<const key>(key::load(keys.key_file));
  }
  if (keys.trace) {
    trace_to_stderr(oa, "bokbok bridge: A");
    trace_to_stderr(ob, "bokbok bridge: B");
  }
  // B first: a client arriving on A is served at once. Then A.
  try {
    connection b = connect(address_b, ob);
    {
      std::lock_guard lock(st->mu);
      st->b = b;
      st->cv.notify_all();
    }
    connection a = connect(address_a, oa);
    bool b_ended;
    {
      std::lock_guard lock(st->mu);
      st->a = a;
      st->cv.notify_all();
      b_ended = st->ended;
    }
    // A's requests may have been forwarded before connect() returned here, and B may
    // have closed meanwhile: its close handler found no A to close, so close it now.
    if (b_ended) a.close();
  } catch (const error& e) {
    std::fprintf(stderr, "bokbok bridge: %s\n", without_prefix(e.what()).c_str());
    std::optional<connection> b;
    {
      std::lock_guard lock(st->mu);
      b = st->b;
    }
    if (b) {
      b->close();
      b->wait_closed();
    }
    return dynamic_cast<const authentication_error*>(&e) ? 4 : 3;
  }
  std::optional<connection> a, b;
  {
    std::unique_lock lock(st->mu);
    st->cv.wait(lock, [&] { return st->ended; });
    a = st->a;
    b = st->b;
  }
  a->wait_closed();
  b->wait_closed();
  return 0;
}

}  // namespace bokbok::tools
