// Reading PROTOCOL.md and the syntax of its test vectors (§10), for
// protocol_vectors_test.cpp. Header-only; included by that one test.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "bokbok/message.hpp"
#include "wire/frame.hpp"
#include "wire/settings.hpp"

namespace protocol_vectors {

using namespace bokbok;
using namespace bokbok::wire;

inline std::string read_spec() {
  const char* root = std::getenv("BOKBOK_SOURCE_ROOT");
  REQUIRE_MESSAGE(root != nullptr, "BOKBOK_SOURCE_ROOT must name the source tree");
  const std::string path = std::string(root) + "/src/wire/PROTOCOL.md";
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return std::string(s);
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// ---- the value syntax of §10 ------------------------------------------------------

inline int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  throw std::runtime_error(std::string("bad hex digit '") + c + "'");
}

// Whitespace-separated groups of hex digits; "hh*N" repeats byte hh N times.
inline std::string parse_hex(const std::string& text) {
  std::string out;
  std::istringstream in(text);
  for (std::string tok; in >> tok;) {
    if (const auto star = tok.find('*'); star != std::string::npos) {
      if (star != 2) throw std::runtime_error("bad repeat token " + tok);
      const char b = static_cast<char>(hex_digit(tok[0]) * 16 + hex_digit(tok[1]));
      out.append(std::stoul(tok.substr(3)), b);
      continue;
    }
    if (tok.size() % 2) throw std::runtime_error("odd hex group " + tok);
    for (std::size_t i = 0; i < tok.size(); i += 2)
      out.push_back(static_cast<char>(hex_digit(tok[i]) * 16 + hex_digit(tok[i + 1])));
  }
  return out;
}

// A quoted string at s[pos] with escapes and an optional *N suffix; advances pos.
inline std::string parse_string(std::string_view s, std::size_t& pos) {
  if (pos >= s.size() || s[pos] != '"') throw std::runtime_error("expected a string");
  std::string out;
  for (++pos;; ++pos) {
    if (pos >= s.size()) throw std::runtime_error("unterminated string");
    char c = s[pos];
    if (c == '"') break;
    if (c == '\\') {
      c = s.at(++pos);
      switch (c) {
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case '\\': out.push_back('\\'); break;
        case '"': out.push_back('"'); break;
        case 'x':
          out.push_back(static_cast<char>(hex_digit(s.at(pos + 1)) * 16 +
                                          hex_digit(s.at(pos + 2))));
          pos += 2;
          break;
        default: throw std::runtime_error(std::string("bad escape \\") + c);
      }
    } else {
      out.push_back(c);
    }
  }
  ++pos;  // the closing quote
  if (pos < s.size() && s[pos] == '*') {
    std::size_t end = ++pos;
    while (end < s.size() && s[end] >= '0' && s[end] <= '9') ++end;
    const std::size_t n = std::stoul(std::string(s.substr(pos, end - pos)));
    pos = end;
    std::string rep;
    for (std::size_t i = 0; i < n; ++i) rep += out;
    out = std::move(rep);
  }
  return out;
}

inline std::string parse_quoted(const std::string& s) {
  std::size_t pos = 0;
  std::string out = parse_string(s, pos);
  if (pos != s.size()) throw std::runtime_error("text after the string: " + s);
  return out;
}

inline message parse_message(const std::string& s) {
  if (s.size() < 2 || s.front() != '[' || s.back() != ']')
    throw std::runtime_error("a message is written [\"a\", \"b\"]: " + s);
  message m;
  std::size_t pos = 1;
  const std::string_view body(s.data(), s.size() - 1);
  while (true) {
    while (pos < body.size() && (body[pos] == ' ' || body[pos] == ',')) ++pos;
    if (pos >= body.size()) break;
    m.push_back(parse_string(body, pos));
  }
  return m;
}

// The settings table of §6.1, as the code knows it.
struct setting_desc {
  const char* name;
  setting_id id;
  std::uint32_t settings::*member;
  bool required = true;  // a `settings` value names it (hello_nonce is optional)
};
inline constexpr setting_desc setting_descs[] = {
    {"max_message_size", setting_id::max_message_size, &settings::max_message_size},
    {"heartbeat_ms", setting_id::heartbeat_ms, &settings::heartbeat_ms},
    {"max_concurrent_calls", setting_id::max_concurrent_calls,
     &settings::max_concurrent_calls},
    {"features", setting_id::features, &settings::features},
    {"hello_nonce", setting_id::hello_nonce, &settings::hello_nonce, false},
};

inline settings parse_settings(const std::string& s) {
  settings out;
  std::set<std::string> given;
  std::istringstream in(s);
  for (std::string tok; in >> tok;) {
    const auto eq = tok.find('=');
    if (eq == std::string::npos) throw std::runtime_error("expected name=value: " + tok);
    const std::string name = tok.substr(0, eq);
    bool found = false;
    for (const auto& d : setting_descs) {
      if (name == d.name) {
        out.*d.member = static_cast<std::uint32_t>(std::stoul(tok.substr(eq + 1)));
        found = true;
      }
    }
    if (!found) throw std::runtime_error("unknown setting " + name);
    given.insert(name);
  }
  for (const auto& d : setting_descs)
    if (d.required && !given.count(d.name))
      throw std::runtime_error("a settings value names all four settings: " + s);
  return out;
}

inline frame_type parse_type(const std::string& name) {
  for (int t = 1; t <= static_cast<int>(frame_type::reply_credit); ++t)
    if (name == to_string(static_cast<frame_type>(t))) return static_cast<frame_type>(t);
  throw std::runtime_error("unknown frame type name " + name);
}

// ---- the vector blocks ------------------------------------------------------------

struct vector {
  int line = 0;  // of the opening fence, for messages
  std::map<std::string, std::string> fields;
  std::string hex;  // the `hex` lines, concatenated
  bool has(const std::string& k) const { return fields.count(k) != 0; }
  const std::string& at(const std::string& k) const {
    auto it = fields.find(k);
    if (it == fields.end()) throw std::runtime_error("vector lacks `" + k + "`");
    return it->second;
  }
  std::string name() const { return has("name") ? at("name") : "?"; }
  bool invalid() const { return has("error"); }
  bool decode_only() const { return has("direction") && at("direction") == "decode"; }
};

inline const std::set<std::string> known_keys = {
    "name", "about", "what", "hex", "error", "direction", "version", "mode", "user",
    "type", "flags", "call-id", "payload", "message", "settings", "code", "text",
    "deadline", "fds", "credit"};

// Reads every fenced block of `spec` whose info string is `info` (```vector, ```key-vector):
// `on_block(line)` at each opening fence (its line number), then `on_entry(key, value,
// line)` for each `key: value` line in it (blank and `#` lines skipped).
template <class OnBlock, class OnEntry>
void for_each_block(const std::string& spec, std::string_view info, OnBlock on_block,
                    OnEntry on_entry) {
  const auto lines = lines_of(spec);
  const std::string fence = "```" + std::string(info);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (trim(lines[i]) != fence) continue;
    on_block(static_cast<int>(i + 1));
    for (++i; i < lines.size() && trim(lines[i]) != "```"; ++i) {
      const std::string line = trim(lines[i]);
      if (line.empty() || line[0] == '#') continue;
      const auto colon = line.find(':');
      const int n = static_cast<int>(i + 1);
      if (colon == std::string::npos)
        throw std::runtime_error("line " + std::to_string(n) + ": expected key: value");
      on_entry(line.substr(0, colon), trim(std::string_view(line).substr(colon + 1)), n);
    }
  }
}

// Sets `key` once; a repeated key is an error naming `line`.
inline void set_once(std::map<std::string, std::string>& fields, const std::string& key,
                     std::string value, int line) {
  if (!fields.emplace(key, std::move(value)).second)
    throw std::runtime_error("line " + std::to_string(line) + ": repeated " + key);
}

inline std::vector<vector> parse_vectors(const std::string& spec) {
  std::vector<vector> out;
  for_each_block(
      spec, "vector", [&](int line) { out.push_back({line, {}, {}}); },
      [&](const std::string& key, std::string value, int line) {
        if (!known_keys.count(key))
          throw std::runtime_error("line " + std::to_string(line) + ": unknown key " + key);
        if (key == "hex")
          out.back().hex += " " + value;
        else
          set_once(out.back().fields, key, std::move(value), line);
      });
  return out;
}

inline const std::vector<vector>& spec_vectors() {
  static const std::vector<vector> vs = parse_vectors(read_spec());
  return vs;
}

}  // namespace protocol_vectors
