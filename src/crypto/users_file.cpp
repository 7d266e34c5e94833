#include "crypto/users_file.hpp"

#include "bokbok/key.hpp"
#include "crypto/key_file.hpp"
#include "wire/preamble.hpp"

namespace bokbok::crypto {

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

std::string_view strip(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

[[noreturn]] void bad_line(const std::string& path, std::size_t line, const std::string& why) {
  throw key_error(path + ":" + std::to_string(line) + ": " + why);
}

}  // namespace

users_table::users_table(std::size_t capacity) : keys_(capacity * key::size) {}

std::optional<key> users_table::find(std::string_view user) const {
  const auto it = index_.find(user);
  if (it == index_.end()) return std::nullopt;
  return key::from_bytes(std::span<const unsigned char, key::size>(
      keys_.data() + it->second * key::size, key::size));
}

bool users_table::add(std::string user, std::span<const unsigned char, key::size> k) {
  const std::size_t slot = index_.size();
  if ((slot + 1) * key::size > keys_.size() || index_.count(user)) return false;
  std::copy(k.begin(), k.end(), keys_.data() + slot * key::size);
  index_.emplace(std::move(user), slot);
  return true;
}

users_table parse_users_file(std::string_view text, const std::string& path) {
  // A valid line takes at least 66 bytes (a 1-byte name, a blank, 64 hex digits): that
  // bounds the number of users without counting lines.
  users_table table(text.size() / (2 + key_hex_len) + 1);
  std::map<std::string, std::size_t, std::less<>> first_line;  // user -> line number
  std::size_t number = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    const std::string_view raw = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++number;
    const std::string_view line = strip(raw);
    if (line.empty() || line.front() == '#') continue;
    std::size_t end_user = 0;
    while (end_user < line.size() && !is_blank(line[end_user])) ++end_user;
    const std::string_view user = line.substr(0, end_user);
    const std::string_view hex = strip(line.substr(end_user));
    if (hex.empty()) bad_line(path, number, "expected \"USER KEYHEX\" but the line has no key");
    if (user.size() > 255)
      bad_line(path, number, "user name of " + std::to_string(user.size()) +
                                 " bytes (at most 255)");
    wiped<key::size> k;
    const bool ok = hex.size() == key_hex_len && from_hex(hex, k.span());
    if (!ok) {
      // Say what is wrong without showing any of it: it may be a key.
      bool has_blank = false;
      for (char c : hex) has_blank = has_blank || is_blank(c);
      bad_line(path, number, has_blank ? "expected \"USER KEYHEX\" but the line has more fields"
                                       : "the key of user \"" + wire::escape_bytes(user) +
                                             "\" is not 64 hex digits");
    }
    if (const auto it = first_line.find(user); it != first_line.end())
      bad_line(path, number, "user \"" + wire::escape_bytes(user) + "\" is listed twice (also on line " +
                                 std::to_string(it->second) + ")");
    first_line.emplace(std::string(user), number);
    table.add(std::string(user), k.span());
  }
  return table;
}

users_table load_users_file(const std::string& path) {
  const secret_bytes text = read_secret_file(path, max_users_file_size, "users file");
  return parse_users_file(
      std::string_view(reinterpret_cast<const char*>(text.data()), text.size()), path);
}

key_lookup lookup_in(std::shared_ptr<const users_table> table) {
  return [table = std::move(table)](std::string_view user) { return table->find(user); };
}

}  // namespace bokbok::crypto
