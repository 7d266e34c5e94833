// bokbok::address (include/bokbok/address.hpp), over transport/address.hpp.
#include "bokbok/address.hpp"

#include <utility>
#include <variant>

#include "api/address_parsed.hpp"

namespace bokbok {

address::address(std::shared_ptr<const parsed> p) noexcept : p_(std::move(p)) {}

address address::parse(std::string_view text) {
  return address(std::make_shared<const parsed>(parsed{transport::parse_address(text)}));
}

address address::exec(const std::vector<std::string>& argv) {
  if (argv.empty()) throw address_error("bokbok: an exec: address needs a command to run");
  return address(
      std::make_shared<const parsed>(parsed{transport::exec_address{argv}}));
}

address::kind address::type() const noexcept {
  // The variant's alternatives, in order (transport/address.hpp).
  static constexpr kind kinds[] = {kind::fd,    kind::stdio,   kind::tcp,  kind::unix_socket,
                                   kind::inetd, kind::systemd, kind::exec, kind::ssh};
  static_assert(std::size(kinds) == std::variant_size_v<transport::address>);
  return kinds[p_->value.index()];
}

std::string address::to_string() const { return transport::to_string(p_->value); }

bool address::connectable() const noexcept {
  if (auto* t = std::get_if<transport::tcp_address>(&p_->value)) return !t->host.empty();
  return type() != kind::inetd && type() != kind::systemd;
}

bool address::reads_stdin() const noexcept {
  switch (type()) {
    case kind::stdio:
    case kind::inetd:
      return true;
    case kind::fd:
      return in_fd() == 0;
    default:
      return false;
  }
}

int address::in_fd() const noexcept {
  auto* f = std::get_if<transport::fd_pair_address>(&p_->value);
  return f ? f->in_fd : -1;
}

int address::out_fd() const noexcept {
  auto* f = std::get_if<transport::fd_pair_address>(&p_->value);
  return f ? f->out_fd : -1;
}

}  // namespace bokbok
