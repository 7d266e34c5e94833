// `bokbok call -d`: arguments given as a JSON array (RFC 8259), turned into fields.
// Pure functions over text, no I/O except read_data.
//
// Elements: a string is sent as its UTF-8 bytes; a number (an integer: '-'? digits, no
// fraction or exponent) as its decimal text; true / false as "true" / "false"; an object
// {"base64": "..."} (standard base64, padding optional) as the bytes it holds. Anything
// else (null, a fraction, a nested array, another object) is a usage_error.
// With the method's signature (from bokbok.describe, PROTOCOL.md §11.2) the count and
// each element are checked against the parameter types first: an integer parameter
// takes a number (or a string holding one), a boolean one true/false, a string one a
// string or a number, a bytes one a string or {"base64": ...}.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bokbok/message.hpp"

namespace bokbok::tools::call {

struct json_arg {
  enum kind_t { string, number, boolean, bytes } kind;
  std::string value;  // the field to send
};

// DATA as -d takes it: "@-" all of standard input, "@FILE" the file, else DATA itself.
std::string read_data(const std::string& data, std::size_t limit);

// Parses a JSON array of arguments; throws usage_error saying what is wrong and where.
std::vector<json_arg> parse_json_args(std::string_view json);

// The fields to send. `params`: the method's (name, type) pairs from bokbok.describe,
// or nullptr when the server does not describe it (then every element goes as is).
// Throws usage_error for a count or an element that does not fit the signature.
message to_fields(const std::vector<json_arg>& args,
                  const std::vector<std::pair<std::string, std::string>>* params,
                  const std::string& method);

}  // namespace bokbok::tools::call
