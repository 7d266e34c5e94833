// bokbok::connection: the public handle, forwarding to connection_impl.
#include "bokbok/connection.hpp"

#include <cstring>

#include "rpc/connection_impl.hpp"

namespace bokbok {

connection::connection(std::shared_ptr<detail::connection_impl> impl) : impl_(std::move(impl)) {}

message connection::request(message m) { return impl_->call_sync(std::move(m)); }

std::future<message> connection::request_async(message m) {
  auto promise = std::make_shared<std::promise<message>>();
  auto future = promise->get_future();
  impl_->call(std::move(m), [promise](std::exception_ptr e, message r) {
    if (e)
      promise->set_exception(std::move(e));
    else
      promise->set_value(std::move(r));
  });
  return future;
}

void connection::request_async(message m, response_callback done) {
  impl_->call(std::move(m), std::move(done));
}

void connection::close() { impl_->close(); }
bool connection::closed() const { return impl_->closed(); }
void connection::wait_closed() const { impl_->wait_closed(); }
std::string connection::close_reason() const { return impl_->close_reason(); }
const std::string& connection::peer_address() const { return impl_->peer_address(); }
const std::string& connection::user() const { return impl_->user(); }
std::any& connection::user_data() const { return impl_->user_data(); }

}  // namespace bokbok

namespace bokbok {

std::optional<connection::credentials> connection::peer_credentials() const {
  return impl_->peer_credentials();
}

std::optional<child_exit> connection::child_status() const {
  const auto& process = impl_->process();
  return process ? process->exit_status() : std::nullopt;
}

std::string child_exit::describe() const {
  std::string who = "child " + std::to_string(pid);
  if (signal == 0) return who + " exited with status " + std::to_string(code);
  const char* name = sigabbrev_np(signal);
  return who + " was killed by signal " + std::to_string(signal) +
         (name ? std::string(" (SIG") + name + ")" : "");
}

}  // namespace bokbok
