// Command lines inside addresses (exec:, ssh:): splitting text into words, and quoting
// words for a POSIX shell on the far side of ssh. Pure functions, no I/O.
//
// Splitting follows a small, documented subset of sh (README "Addresses"): words are
// separated by spaces or tabs; 'single quotes' keep everything literally; "double
// quotes" keep everything except \" \\ \$ and \` , which lose their backslash; outside
// quotes a backslash keeps the next character literally. Nothing is expanded: no
// variables, globs, ~ or command substitution, so a path with spaces needs quotes and a
// $ is just a $.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace bokbok::transport {

// Splits `text` into words. Throws bokbok::address_error naming `address` (the whole
// address, for the message) on an unterminated quote or a trailing backslash.
std::vector<std::string> split_command(std::string_view text, std::string_view address);

// Quotes one word so that a POSIX shell reads it back unchanged: words made only of
// safe characters stay bare, others are single-quoted ('it'\''s').
std::string shell_quote(std::string_view word);

// The words quoted and joined by spaces: one string for `ssh HOST 'COMMAND'`.
std::string shell_join(const std::vector<std::string>& words);

}  // namespace bokbok::transport
