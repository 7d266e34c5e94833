// What `bokbok list` and `bokbok describe` share: their options, one introspection call
// (PROTOCOL.md §11.2) and the parsing and JSON printing of its answer.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "bokbok/message.hpp"
#include "command.hpp"
#include "connect_flags.hpp"

namespace bokbok::tools::introspect {

// The options lines `bokbok list --help` and `bokbok describe --help` share, after their
// own (--json), as parse() takes them.
inline constexpr char shared_options_help[] =
    "  --timeout SECONDS   the whole exchange, connecting included (default 10)\n"
    "  -v, --trace         print every frame sent and received, decoded, on stderr\n"
    "  --user NAME         key mode: authenticate as NAME (with --key-file)\n"
    "  --key-file FILE     NAME's key (a file made by `bokbok keygen`)\n"
    "  --help              show this help\n";

// String literals joined at compile time, for a help text built around
// shared_options_help: a NUL-terminated array; help_view() sees it as text.
template <std::size_t... N>
constexpr auto join_help(const char (&... parts)[N]) {
  std::array<char, (N + ...) - sizeof...(N) + 1> out{};
  std::size_t at = 0;
  for (std::string_view part : {std::string_view(parts, N - 1)...})
    for (char c : part) out[at++] = c;
  return out;
}
template <std::size_t N>
constexpr std::string_view help_view(const std::array<char, N>& text) {
  return {text.data(), N - 1};
}

// Exit statuses, as `bokbok call` uses them.
enum exit_status : int { exit_ok = 0, exit_remote_error = 1, exit_transport = 3, exit_auth = 4, exit_timed_out = 5 };

// --timeout SECONDS (the whole exchange; default 10), --user NAME --key-file FILE (key
// mode): connect_flags, as `bokbok call` takes them.
struct common_options : connect_flags {
  bool json = false;
  bool trace = false;  // -v / --trace: every frame on stderr
  std::vector<std::string> operands;  // ADDRESS, then the command's own
};

// Parses --json, -v/--trace, --timeout SECONDS, --user NAME --key-file FILE and the operands
// (after "--", all operands).
common_options parse(args_view args);

// Connects to o.operands[0] (in key mode with o.user / o.key_file), sends `request`, returns the answer, or prints why not on
// stderr ("bokbok WHERE: ...") and returns the exit status. A server without a router
// answers no_such_method: the message then says it offers no introspection.
std::variant<message, int> ask(std::string_view where, const common_options& o,
                               message request);

// bokbok.describe's answer (§11.2), checked: at least 4 fields, an even count. A last
// pair with an empty name marks a stream method ("", "stream:out|in|both"): it is not a
// parameter.
struct description {
  std::string name, description, protocol, features;
  std::vector<std::pair<std::string, std::string>> params;  // name, type
  std::string stream;  // "out", "in", "both"; empty for a plain method
};
// Throws std::runtime_error if the answer does not have that layout.
description parse_description(const message& answer);

// A field as JSON: a string if it is text (as `call --json` decides), else
// {"base64": "..."}.
std::string json_value(std::string_view field);

}  // namespace bokbok::tools::introspect
