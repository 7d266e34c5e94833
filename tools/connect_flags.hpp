// The connection flags `bokbok call`, `list`, `describe` and `ping` share, parsed and
// checked in one place: --timeout SECONDS, and key mode's --user NAME --key-file FILE.
// Each tool keeps its own loop over its arguments and hands these flags here.
//
// Threads: the command line is parsed on the main thread; no state is shared.
#pragma once

#include <bokbok/connection.hpp>

#include <string>
#include <string_view>

#include "command.hpp"

namespace bokbok::tools {

// --timeout's value: a decimal number of seconds (digits and a point: no sign, exponent
// or "inf"), from 0.001 to 1000000. Throws usage_error saying so.
double parse_timeout_seconds(std::string_view text);

struct connect_flags {
  double timeout = 0;          // seconds; 0: --timeout not given
  std::string user, key_file;  // key mode: both or neither (check())

  // Takes `arg`, an option name just read by `reader`, with its value, when it is
  // --timeout, or --user / --key-file with `keys`; false (nothing read) for any other.
  bool take(std::string_view arg, arg_reader& reader, bool keys = true);
  // After the options: usage_error unless --user and --key-file came together.
  void check() const;
  // Key mode into `o` when --user was given: the key is loaded now, so a missing or
  // unsafe key file is bad usage (usage_error, exit 2), said before connecting.
  void apply_keys(options& o) const;
};

}  // namespace bokbok::tools
