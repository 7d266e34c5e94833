// `-v` / `--trace` for the subcommands that connect: the library's frame trace
// (options::trace) printed on stderr, each line after the command's name
// ("bokbok call: > request id=1 flags=- [2] "echo" "hi"").
#pragma once

#include <string>
#include <string_view>

#include <bokbok/connection.hpp>

namespace bokbok::tools {

inline bool is_trace_option(std::string_view arg) { return arg == "-v" || arg == "--trace"; }

// Sets `opts.trace` to print on stderr, each line prefixed with "WHERE: ". Each line
// goes out in one write(), so lines from several threads do not mix.
void trace_to_stderr(options& opts, std::string where);

}  // namespace bokbok::tools
