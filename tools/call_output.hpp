// `bokbok call`: how a response is printed. Pure functions over bytes, no I/O.
//
//   lines   each field raw, followed by "\n" (ambiguous if a field holds a newline)
//   json    one line: a JSON array (RFC 8259) with one element per field; a field that is
//           "text" (see is_json_text) is a JSON string, any other field is an object
//           {"base64": "..."} holding its bytes in standard base64 (RFC 4648 section 4,
//           with '=' padding). The line ends with "\n".
//
// What else `bokbok call` prints (see its help text):
//   a notification the server sends during the call
//           plain: on stderr, "bokbok call: notification: FIELD FIELD..." (each field
//           escaped by escape_text, separated by one space); json: one line
//           {"notification": [...]} with the fields as in a response
//   a remote error (json only; the plain line on stderr is unchanged)
//           one line {"error": {"code": N, "name": "NAME", "message": "TEXT"}}, the
//           message a JSON string when is_json_text, else {"base64": "..."}
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

// Bytes for one line of text: '\' as \\, control bytes (below 0x20, and 0x7f) as \xHH.
std::string escape_text(std::string_view bytes);

// A notification, ready to write (see above); each ends with "\n".
std::string format_notification_line(const message& notification);  // without the prefix
std::string format_json_notification(const message& notification);

// A remote error under --json (see above), ending with "\n".
std::string format_json_error(unsigned code, std::string_view name, std::string_view text);
// A failure on this side under --json (connection_failed, authentication_failed,
// timed_out): the same shape with "code": null, as it has no protocol code.
std::string format_json_local_error(std::string_view name, std::string_view text);

}  // namespace bokbok::tools::call
