// Shared connection flags of the bokbok tools (connect_flags.hpp).
#include "connect_flags.hpp"

#include <bokbok/key.hpp>

#include <cstdlib>
#include <memory>

namespace bokbok::tools {

double parse_timeout_seconds(std::string_view text) {
  std::string s(text);
  const bool decimal = !s.empty() && s.find_first_not_of("0123456789.") == std::string::npos;
  char* end = nullptr;
  const double v = decimal ? std::strtod(s.c_str(), &end) : 0;
  if (!decimal || *end != '\0' || !(v >= 0.001) || v > 1e6)
    throw usage_error("--timeout wants a number of seconds from 0.001 to 1000000, not '" + s +
                      "'");
  return v;
}

bool connect_flags::take(std::string_view arg, arg_reader& reader, bool keys) {
  if (arg == "--timeout") {
    timeout = parse_timeout_seconds(reader.value());
  } else if (keys && arg == "--user") {
    user = reader.value();
  } else if (keys && arg == "--key-file") {
    key_file = reader.value();
  } else {
    return false;
  }
  return true;
}

void connect_flags::check() const {
  if (user.empty() != key_file.empty())
    throw usage_error("key mode needs both --user NAME and --key-file FILE");
}

void connect_flags::apply_keys(options& o) const {
  if (user.empty()) return;
  o.keys.user = user;
  try {
    o.keys.key = std::make_shared<const key>(key::load(key_file));
  } catch (const key_error& e) {
    throw usage_error(without_prefix(e.what()));
  }
}

}  // namespace bokbok::tools
