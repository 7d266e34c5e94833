#include "transport/address.hpp"

#include <charconv>

#include "bokbok/error.hpp"

namespace bokbok::transport {

namespace {

[[noreturn]] void bad(std::string_view text, std::string_view expected) {
  throw address_error("bokbok: bad address \"" + std::string(text) + "\": expected " +
                      std::string(expected));
}

bool parse_fd(std::string_view s, int& out) {
  if (s.empty() || s.size() > 9) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && out >= 0;
}

constexpr std::string_view known =
    "one of fd:R,W (two file descriptor numbers) or stdio";

}  // namespace

address parse_address(std::string_view text) {
  if (text == "stdio") return stdio_address{};
  auto colon = text.find(':');
  if (colon == std::string_view::npos) bad(text, known);
  std::string_view scheme = text.substr(0, colon), rest = text.substr(colon + 1);
  if (scheme == "fd") {
    auto comma = rest.find(',');
    fd_pair_address a{};
    if (comma == std::string_view::npos || !parse_fd(rest.substr(0, comma), a.in_fd) ||
        !parse_fd(rest.substr(comma + 1), a.out_fd))
      bad(text, "fd:R,W with R and W non-negative file descriptor numbers, e.g. fd:3,4");
    return a;
  }
  bad(text, std::string(known) + " (unknown scheme \"" + std::string(scheme) + ":\")");
}

std::string to_string(const address& a) {
  if (auto* f = std::get_if<fd_pair_address>(&a))
    return "fd:" + std::to_string(f->in_fd) + "," + std::to_string(f->out_fd);
  return "stdio";
}

}  // namespace bokbok::transport
