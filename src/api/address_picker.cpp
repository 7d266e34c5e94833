// address_picker (api/address_picker.hpp).
#include "api/address_picker.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <vector>

#include "bokbok/error.hpp"
#include "transport/sockaddr.hpp"

namespace bokbok::detail {

namespace {
// Where the next round-robin picker starts, so that connections opened one after
// another in this process spread over the addresses.
std::atomic<unsigned> next_picker_start{0};
}  // namespace

address_picker::address_picker(transport::tcp_address where, address_choice choice,
                               std::chrono::milliseconds initial_backoff,
                               std::chrono::milliseconds max_backoff)
    : where_(std::move(where)),
      name_(transport::to_string(transport::address(where_))),
      choice_(choice),
      initial_(std::max(initial_backoff, std::chrono::milliseconds(1))),
      max_(std::max(max_backoff, initial_)),
      next_start_(choice == address_choice::round_robin ? next_picker_start.fetch_add(1) : 0) {
  if (where_.host.empty())  // usage, not a network failure: address_error
    throw address_error("bokbok: cannot connect to " + name_ +
                        ": * means every address, for listening; name a host to connect to");
}

void address_picker::failed_locked(const std::string& name) {
  auto [it, fresh] = failed_.try_emplace(name, backoff{initial_, {}});
  if (!fresh) it->second.delay = std::min(it->second.delay * 2, max_);
  it->second.until = clock::now() + it->second.delay;
}

std::shared_ptr<connection_impl> address_picker::dial(std::chrono::milliseconds connect_timeout,
                                                      const open_fn& open) {
  const std::string context = "bokbok: cannot connect to " + name_;
  auto found = transport::resolve_for_connect(where_, context);
  const auto& eps = found.endpoints;
  std::vector<std::size_t> order;
  {
    std::lock_guard lock(mu_);
    // Forget addresses the name no longer gives: state only for this client's addresses.
    std::erase_if(failed_, [&](const auto& kv) {
      return std::none_of(eps.begin(), eps.end(), [&](const auto& e) { return e.name == kv.first; });
    });
    std::size_t start = 0;
    if (choice_ == address_choice::round_robin && !eps.empty()) start = next_start_++ % eps.size();
    for (std::size_t i = 0; i < eps.size(); ++i) order.push_back((start + i) % eps.size());
    auto now = clock::now();
    auto waiting_until = [&](std::size_t i) {
      auto it = failed_.find(eps[i].name);
      return it == failed_.end() || it->second.until <= now ? clock::time_point{} : it->second.until;
    };
    // Ready ones first in their order, then those still backing off, soonest first.
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return waiting_until(a) < waiting_until(b); });
  }
  std::string failures;
  int tried = 0;
  std::exception_ptr open_failure;  // the last open() error, thrown as is when alone
  for (const auto& f : found.failures) failures += (tried++ ? "; " : "") + f;
  for (std::size_t i : order) {
    const auto& e = eps[i];
    std::string why;
    auto [fd, connect_why] =
        transport::connect_endpoint(e, connect_timeout, transport::fd_mode::nonblocking);
    if (fd) {
      try {
        auto c = open(transport::connected_socket{
            std::move(fd), e.name, base::fd_kind::stream_socket(e.sa.ss_family, true)});
        std::lock_guard lock(mu_);
        failed_.erase(e.name);
        return c;
      } catch (const authentication_error&) {
        throw;
      } catch (const transport_error& err) {
        why = err.what();
        open_failure = std::current_exception();
      }
    } else {
      why = connect_why;
    }
    {
      std::lock_guard lock(mu_);
      failed_locked(e.name);
    }
    if (tried++) failures += "; ";
    failures += transport::endpoint_text(reinterpret_cast<const sockaddr*>(&e.sa), e.len) + ": " + why;
  }
  // One address: its reason alone, as connect_socket gives it (or what opening threw).
  if (tried == 1 && open_failure) std::rethrow_exception(open_failure);
  if (tried == 1) failures = failures.substr(failures.find(": ") + 2);
  throw transport_error(context + ": " + failures);
}

}  // namespace bokbok::detail
