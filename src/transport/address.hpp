// The address grammar (README "Addresses"), parsed in one place for connecting and for
// listening. This revision knows the fd-pair forms; sockets and child processes follow.
#pragma once

#include <string>
#include <string_view>
#include <variant>

namespace bokbok::transport {

struct fd_pair_address {
  int in_fd;
  int out_fd;
};
struct stdio_address {};

using address = std::variant<fd_pair_address, stdio_address>;

// Parses `text`; throws bokbok::address_error quoting `text` and saying what was
// expected. `fd:R,W` takes non-negative decimal fd numbers (R may equal W).
address parse_address(std::string_view text);

// The canonical text of an address ("fd:3,4", "stdio").
std::string to_string(const address& a);

}  // namespace bokbok::transport
