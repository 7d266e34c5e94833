// Opening a connection, starting it on its loop, and handing over held requests. Our
// calls: connection_calls.cpp; the peer's requests: connection_requests.cpp; inbound
// frames: connection_reader.cpp; closing and ending: connection_close.cpp.
#include "rpc/connection_impl.hpp"

#include <atomic>
#include <cerrno>
#include <algorithm>
#include <cstring>
#include <future>
#include <system_error>
#include <thread>

#include "base/log.hpp"
#include "base/parking.hpp"
#include "rpc/callback_error.hpp"
#include "rpc/error_ptr.hpp"

#include "wire/message_codec.hpp"

namespace bokbok::detail {

connection_impl::connection_impl(config cfg)
    : cfg_(std::move(cfg)),
      trace_(rpc::choose_trace_sink(cfg_.opts.trace, cfg_.peer)),
      frames_(cfg_.opts.max_message_size, wire::max_partial_messages),
      inbound_({cfg_.opts.max_concurrent_calls, cfg_.opts.max_queued_calls,
                cfg_.opts.max_threads, cfg_.opts.inline_handlers}) {
  pool_ = cfg_.pool;
  if (!pool_)
    pool_ = std::make_shared<rpc::handler_pool>(rpc::handler_pool::limits{
        cfg_.opts.max_threads, std::max<std::size_t>(cfg_.opts.max_queued_calls, 1),
        std::chrono::seconds(5), cfg_.opts.max_waiting_handlers});
  receive_limit_ = cfg_.opts.max_receive_bytes ? cfg_.opts.max_receive_bytes
                                                : 2 * cfg_.opts.max_message_size;
  account_ = std::make_shared<rpc::receive_account>(receive_limit_, cfg_.receive_pool);
  user_ = cfg_.local.user;
  if (cfg_.keys) {
    cfg_.local.mode = wire::mode::key;
    cfg_.local.user = cfg_.keys->initiator() ? cfg_.keys->user : std::string();
    user_ = cfg_.local.user;
    key_ = std::make_unique<rpc::key_session>(cfg_.keys, wire::encode_preamble(cfg_.local),
                                              settings_payload());
  }
}

connection_impl::~connection_impl() {
  if (cfg_.receive_pool && partial_charged_)
    cfg_.receive_pool->add(-static_cast<std::ptrdiff_t>(partial_charged_));
}

void check_options(const options& o) {
  if (o.max_message_size < wire::min_max_message_size)
    throw usage_error("bokbok: options::max_message_size must be at least 65536");
  if (o.max_message_size > 0xffffffffu)
    throw usage_error("bokbok: options::max_message_size must fit in 32 bits");
  if (o.stream_window_messages == 0 || o.stream_window_bytes == 0)
    throw usage_error("bokbok: options::stream_window_messages and stream_window_bytes must be "
                      "at least 1 (0 would let no stream message through)");
  if (o.caller_spin.count() < 0)
    throw usage_error("bokbok: options::caller_spin must not be negative (0: never spin)");
  if (o.max_send_queue == 0)
    throw usage_error("bokbok: options::max_send_queue must be at least 1 byte (0 would let "
                      "nothing be sent)");
  rpc::make_key_config(o.keys, nullptr);  // throws for keys that cannot work
}

namespace {
void check_config(const connection_impl::config& cfg) { check_options(cfg.opts); }
}  // namespace

void connection_impl::open_async(config cfg, base::unique_fd in, base::unique_fd out,
                                 open_callback done) {
  start_async(std::move(cfg), std::move(in), std::move(out), std::move(done));
}

std::shared_ptr<connection_impl> connection_impl::start_async(config cfg, base::unique_fd in,
                                                              base::unique_fd out,
                                                              open_callback done) {
  check_config(cfg);
  cfg.carries_fds = !out && cfg.in_kind ? cfg.in_kind->unix_stream()
                                        : rpc::can_carry_fds(in.get(), out.get());
  if (out) cfg.in_kind.reset();  // it describes a lone socket only
  auto c = std::make_shared<connection_impl>(std::move(cfg));
  c->life_.keep_alive(c);  // no other thread knows it yet
  c->opened_ = std::move(done);
  c->holding_ = c->cfg_.hold_requests;
  auto in_fd = std::make_shared<base::unique_fd>(std::move(in));
  auto out_fd = std::make_shared<base::unique_fd>(std::move(out));
  c->cfg_.loop->post([c, in_fd, out_fd] { c->start(std::move(*in_fd), std::move(*out_fd)); });
  return c;
}

std::shared_ptr<connection_impl> connection_impl::open(config cfg, base::unique_fd in,
                                                       base::unique_fd out) {
  // The opener parks until the outcome is in (base/parking.hpp: no mutex to take back
  // when woken). `done` is set last; the callback runs once.
  struct outcome {
    base::parking park;
    std::atomic<bool> done{false};
    std::shared_ptr<connection_impl> conn;
    std::exception_ptr error;
  };
  auto o = std::make_shared<outcome>();
  auto c = start_async(std::move(cfg), std::move(in), std::move(out),
             [o](std::shared_ptr<connection_impl> c, std::exception_ptr e) {
               o->conn = std::move(c);
               o->error = std::move(e);
               o->done.store(true, std::memory_order_seq_cst);
               o->park.unpark();
             });
  o->park.park_until([&] { return o->done.load(std::memory_order_seq_cst); });
  if (o->error) {
    auto error = std::move(o->error);  // this thread is its only owner now
    // What the failure still sends (a key-mode refusal's decoy, a goaway saying why)
    // goes out before the caller hears of it: a process that exits on this error (a
    // child serving stdio) would otherwise cut it off. Bounded by close_drain_timeout.
    std::unique_lock wait(c->mu_);
    c->closed_cv_.wait(wait, [&] { return c->life_.stream_is_dropped(); });
    wait.unlock();
    std::rethrow_exception(std::move(error));
  }
  return std::move(o->conn);
}

void connection_impl::release_requests() {
  cfg_.loop->post([self = shared_from_this()] {
    self->holding_ = false;
    std::vector<queued_call> held;
    {
      std::lock_guard lock(self->mu_);
      held = self->inbound_.take_held();  // counted as running until dispatched
    }
    for (auto& h : held) {
      {
        std::lock_guard lock(self->mu_);
        self->inbound_.dispatching_held();
      }
      self->dispatch_message(std::move(h));
    }
  });
}

// Loop thread: sends our preamble and hello at once, then reads.
void connection_impl::start(base::unique_fd in, base::unique_fd out) {
  try {
    stream_ = io::duplex_stream::create(cfg_.loop, std::move(in), std::move(out), this,
                                        cfg_.in_kind);
  } catch (const std::exception& e) {
    {
      std::lock_guard lock(mu_);
      (void)life_.stream_dropped();  // the close handler has not run: nothing released
    }
    return finish(end_kind::transport, std::string("cannot use the file descriptors: ") + e.what());
  }
  std::string hello = wire::encode_preamble(cfg_.local);
  {
    std::lock_guard lock(mu_);
    send_.set_stream(stream_);  // callers may write to it from here on
    if (key_) {
      send_.push_raw(hello);  // key mode: the settings travel in the handshake (§9.6)
    } else {
      hello_nonce_ = new_hello_nonce();  // must not come back (§6.1)
      wire::append_frame(hello, wire::frame_type::hello, 0, 0, settings_payload());
      send_.queue().push_record_bytes(hello);
    }
  }
  auto weak = weak_from_this();
  handshake_timer_ = cfg_.loop->add_timer(
      io::clock::now() + cfg_.opts.connect_timeout, [this, weak] {
        if (auto self = weak.lock())
          finish(end_kind::transport,
                 "timed out after " + std::to_string(cfg_.opts.connect_timeout.count()) +
                     " ms waiting for " + handshake_awaited());
      });
  stream_->start_reading();
  flush();
}

}  // namespace bokbok::detail
