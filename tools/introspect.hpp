// What `bokbok list` and `bokbok describe` share: their options, one introspection call
// (PROTOCOL.md §11.2) and the parsing and JSON printing of its answer.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "bokbok/message.hpp"
#include "command.hpp"

namespace bokbok::tools::introspect {

// Exit statuses, as `bokbok call` uses them.
enum exit_status : int { exit_ok = 0, exit_remote_error = 1, exit_transport = 3, exit_auth = 4, exit_timed_out = 5 };

struct common_options {
  bool json = false;
  bool trace = false;  // -v / --trace: every frame on stderr
  double timeout = 10;  // seconds, the whole exchange
  std::string user, key_file;  // key mode, as `bokbok call` takes them
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

// bokbok.describe's answer (§11.2), checked: at least 4 fields, an even count.
struct description {
  std::string name, description, protocol, features;
  std::vector<std::pair<std::string, std::string>> params;  // name, type
};
// Throws std::runtime_error if the answer does not have that layout.
description parse_description(const message& answer);

// A field as JSON: a string if it is text (as `call --json` decides), else
// {"base64": "..."}.
std::string json_value(std::string_view field);

}  // namespace bokbok::tools::introspect
