// bokbok::connection: the public handle, forwarding to connection_impl (through the
// reconnector for a connection opened with a reconnect_policy).
#include "bokbok/connection.hpp"

#include "rpc/connection_impl.hpp"
#include "api/reconnector.hpp"
#include "api/user_handle.hpp"

namespace bokbok {

namespace {

// Runs `f`, turning what it throws into a callback error (asynchronous forms).
template <class F>
bool or_report(F f, const response_callback& done) {
  try {
    f();
    return true;
  } catch (...) {
    done(std::current_exception(), {});
    return false;
  }
}

}  // namespace

connection::connection(std::shared_ptr<detail::connection_impl> impl,
                       std::shared_ptr<detail::reconnector> reconnect,
                       std::shared_ptr<detail::user_hold> hold)
    : impl_(std::move(impl)), reconnect_(std::move(reconnect)), hold_(std::move(hold)) {}

namespace detail {

// Shared by the user handles of one connection (api/user_handle.hpp).
struct user_hold {
  std::weak_ptr<io::loop> loop;
  std::weak_ptr<connection_impl> impl;
  std::weak_ptr<reconnector> reconnect;

  // The last user handle went: close gracefully, from the loop thread. The handle that
  // held this still holds the connection (hold_ goes first), so the weak references lock.
  ~user_hold() {
    auto l = loop.lock();
    if (!l) return;  // the loop has stopped: nothing runs any more
    auto c = impl.lock();
    auto r = reconnect.lock();
    l->post([c = std::move(c), r = std::move(r)] {
      if (r)
        r->close(std::chrono::seconds(5));
      else if (c)
        c->close_gracefully(std::chrono::seconds(5));
    });
  }
};

connection user_handle(std::shared_ptr<connection_impl> impl,
                       std::shared_ptr<reconnector> reconnect) {
  auto hold = std::make_shared<user_hold>();
  hold->loop = impl->loop();
  hold->impl = impl;
  hold->reconnect = reconnect;
  return connection(std::move(impl), std::move(reconnect), std::move(hold));
}

}  // namespace detail

message connection::request(message m) { return request(std::move(m), call_options{}); }

message connection::request(message m, const call_options& opts) {
  if (!reconnect_) return impl_->call_sync(std::move(m), opts);
  // While reconnecting, it waits as long as its deadline allows. A call that met a
  // connection which had just dropped, and so never wrote its request, goes again on
  // the next one (the dropped one is never handed out again), and so does one the
  // peer's goaway refused unrun (made after the goaway, or past its last id: the
  // connection that went away is never handed out again either); one that may have
  // reached the peer fails.
  call_options fixed = opts;
  fixed.deadline = detail::effective_deadline(opts);
  fixed.timeout.reset();
  for (;;) {
    auto inner = reconnect_->current(fixed.deadline);
    try {
      return inner->call_sync(message(m), fixed);  // a copy: it may have to go again
    } catch (const detail::not_sent_error&) {
    } catch (const detail::unrun_refusal_error&) {
    }
  }
}

std::future<message> connection::request_async(message m) {
  return request_async(std::move(m), call_options{});
}

void connection::request_async(message m, response_callback done) {
  request_async(std::move(m), call_options{}, std::move(done));
}

std::future<message> connection::request_async(message m, const call_options& opts) {
  auto promise = std::make_shared<std::promise<message>>();
  auto future = promise->get_future();
  request_async(std::move(m), opts, [promise](std::exception_ptr e, message r) {
    if (e)
      promise->set_exception(std::move(e));
    else
      promise->set_value(std::move(r));
  });
  return future;
}

call_handle connection::request_async(message m, const call_options& opts,
                                      response_callback done) {
  call_handle h;
  std::shared_ptr<detail::connection_impl> c;
  // While reconnecting, an asynchronous call does not wait: it fails at once.
  if (!or_report([&] { c = reconnect_ ? reconnect_->current_now() : impl_; }, done))
    return h;
  h.conn_ = c;
  h.seq_ = c->call(std::move(m), std::move(done), opts);
  return h;
}

void connection::notify(message m) {
  if (!reconnect_) return impl_->notify(std::move(m));
  // Like request(): one refused by a connection that had just dropped, or gone away,
  // goes again.
  for (;;) {
    auto inner = reconnect_->current(std::nullopt);
    try {
      return inner->notify(message(m));
    } catch (const detail::not_sent_error&) {
    } catch (const detail::unrun_refusal_error&) {
    }
  }
}

// With fds (rpc/connection_fds.cpp): a reconnecting connection uses the inner connection
// of the moment once (the fds cannot go twice).
parcel connection::request_with_fds(message m, fd_list fds, const call_options& opts) {
  auto inner = reconnect_ ? reconnect_->current(opts.deadline) : impl_;
  if (!fds.empty()) inner->check_fds(fds.size(), "request_with_fds");
  parcel p;
  p.fields = inner->call_sync(std::move(m), opts, detail::connection_impl::to_io_fds(std::move(fds)),
                              &p.fds);
  return p;
}

std::future<parcel> connection::request_async_with_fds(message m, fd_list fds,
                                                       const call_options& opts) {
  auto promise = std::make_shared<std::promise<parcel>>();
  auto future = promise->get_future();
  auto done = [promise](std::exception_ptr e, message r) {
    if (e) return promise->set_exception(std::move(e));
    // Runs in deliver_answers, which lends the answer's fds for this callback.
    promise->set_value(parcel{std::move(r), detail::connection_impl::take_answer_fds()});
  };
  std::shared_ptr<detail::connection_impl> c;
  // While reconnecting, an asynchronous call does not wait: it fails at once.
  if (!or_report([&] { c = reconnect_ ? reconnect_->current_now() : impl_; }, done))
    return future;
  if (!fds.empty()) c->check_fds(fds.size(), "request_async_with_fds");
  c->call(std::move(m), std::move(done), opts, /*blocking=*/false, nullptr,
          detail::connection_impl::to_io_fds(std::move(fds)));
  return future;
}

void connection::notify_with_fds(message m, fd_list fds) {
  auto inner = reconnect_ ? reconnect_->current(std::nullopt) : impl_;
  if (!fds.empty()) inner->check_fds(fds.size(), "notify_with_fds");
  inner->notify(std::move(m), detail::connection_impl::to_io_fds(std::move(fds)));
}

namespace {

// Shared by the handles of one blocking stream call (the handles alias its state). When
// the last one goes while the call runs, the call is cancelled: nobody can read its
// messages or its answer any more, and the handler would otherwise wait for credit
// until the call's deadline, perhaps forever, holding its thread. (The callback form
// needs no handle: its callbacks keep the call.) Any thread; cancel_call only posts.
struct stream_hold {
  std::shared_ptr<detail::stream_state> s;
  stream_hold() = default;
  stream_hold(const stream_hold&) = delete;
  stream_hold& operator=(const stream_hold&) = delete;
  ~stream_hold() {
    if (!s || s->ended()) return;
    if (auto c = s->conn.lock()) c->cancel_call(s->seq, error_code::cancelled);
  }
};

}  // namespace

// A stream call is not sent again after a reconnect (its messages may have been read):
// it goes on the current connection, failing while there is none.
stream connection::open_stream(message m, const call_options& opts) {
  auto c = reconnect_ ? reconnect_->current(detail::effective_deadline(opts)) : impl_;
  auto hold = std::make_shared<stream_hold>();  // made in place: a copy's end would cancel
  hold->s = c->open_stream(std::move(m), opts);
  detail::stream_state* state = hold->s.get();
  return stream(std::shared_ptr<detail::stream_state>(std::move(hold), state));
}

stream connection::open_stream(message m, const call_options& opts, stream_callback on_message,
                               response_callback done) {
  if (!on_message || !done) throw usage_error("bokbok: open_stream needs both callbacks");
  std::shared_ptr<detail::connection_impl> c;
  if (!or_report([&] { c = reconnect_ ? reconnect_->current_now() : impl_; }, done)) return {};
  return stream(c->open_stream(std::move(m), opts, std::move(on_message), std::move(done)));
}

void connection::close(std::chrono::milliseconds grace) {
  if (reconnect_) return reconnect_->close(grace);
  impl_->close_gracefully(grace);
}

void connection::abort() {
  if (reconnect_) return reconnect_->abort();
  impl_->close();
}

bool connection::closed() const { return reconnect_ ? reconnect_->closed() : impl_->closed(); }

void connection::wait_closed() const {
  if (reconnect_) return reconnect_->wait_closed();
  impl_->wait_closed();
}

std::string connection::close_reason() const {
  return reconnect_ ? reconnect_->close_reason() : impl_->close_reason();
}

std::exception_ptr connection::close_error() const {
  if (!closed()) return nullptr;
  auto inner = latest();
  return inner ? inner->failure() : nullptr;
}

std::shared_ptr<detail::connection_impl> connection::latest() const {
  return reconnect_ ? reconnect_->latest() : impl_;
}

std::string connection::peer_address() const { return latest()->peer_address(); }
std::string connection::user() const { return latest()->user(); }
std::any& connection::user_data() const {
  return reconnect_ ? reconnect_->user_data() : impl_->user_data();
}

std::optional<connection::credentials> connection::peer_credentials() const {
  return latest()->peer_credentials();
}

std::optional<child_exit> connection::child_status() const {
  // After a reconnect: the current child's. Both are held here, not borrowed from a
  // temporary.
  auto conn = latest();
  auto process = conn->process();
  return process ? process->exit_status() : std::nullopt;
}

}  // namespace bokbok
