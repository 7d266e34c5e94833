// `bokbok call`: how a response is printed. Pure functions over bytes, no I/O.
//
//   lines   each field raw, followed by "\n" (ambiguous if a field holds a newline)
//   json    one line: a JSON array (RFC 8259) with one element per field; a field that is
//           "text" (see is_json_text) is a JSON string, any other field is an object
//           {"base64": "..."} holding its bytes in standard base64 (RFC 4648 section 4,
//           with '=' padding). The line ends with "\n".
#pragma once

#include <string>
#include <string_view>

#include "bokbok/message.hpp"

namespace bokbok::tools::call {

// True if `field` is valid UTF-8 (shortest forms only, no surrogates, at most U+10FFFF)
// and holds no control character (U+0000-U+001F, U+007F-U+009F) other than \n, \t, \r.
bool is_json_text(std::string_view field);

// Standard base64 with padding ("" for no bytes).
std::string base64(std::string_view bytes);

// `text` (which must satisfy is_json_text) as a quoted JSON string: '"' and '\' are
// escaped, \n \t \r become those escapes, every other character is copied as is.
std::string json_string(std::string_view text);

// The whole response, ready to write.
std::string format_lines(const message& response);
std::string format_json(const message& response);

}  // namespace bokbok::tools::call
