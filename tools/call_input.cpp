// `bokbok call -d`: JSON arguments to fields (call_input.hpp).
#include "call_input.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "command.hpp"

namespace bokbok::tools::call {

std::string read_data(const std::string& data, std::size_t limit) {
  if (!data.starts_with('@')) return data;
  int fd = data == "@-" ? STDIN_FILENO : ::open(data.c_str() + 1, O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw usage_error("-d " + data + ": " + std::generic_category().message(errno));
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int e = errno;
      if (fd != STDIN_FILENO) ::close(fd);
      if (r < 0) throw usage_error("-d " + data + ": " + std::generic_category().message(e));
      return text;
    }
    text.append(buf, std::size_t(r));
    if (text.size() > limit) {
      if (fd != STDIN_FILENO) ::close(fd);
      throw usage_error("-d " + data + ": larger than a message may be");
    }
  }
}

namespace {

// A small RFC 8259 reader for what -d takes.
class json_reader {
 public:
  explicit json_reader(std::string_view text) : s_(text) {}

  std::vector<json_arg> array() {
    std::vector<json_arg> out;
    expect('[');
    if (peek() == ']') {
      ++pos_;
    } else {
      for (;;) {
        out.push_back(element());
        char c = peek();
        ++pos_;
        if (c == ']') break;
        if (c != ',') fail("',' or ']' expected");
      }
    }
    if (peek() != '\0') fail("text after the array");
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw usage_error("-d: not a JSON array of arguments: " + why + " at offset " +
                      std::to_string(pos_));
  }
  // The next non-space character ('\0' at the end), not consumed.
  char peek() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' ||
                                s_[pos_] == '\r'))
      ++pos_;
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("'") + c + "' expected");
    ++pos_;
  }
  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  json_arg element() {
    char c = peek();
    if (c == '"') return {json_arg::string, string()};
    if (c == '-' || (c >= '0' && c <= '9')) return {json_arg::number, number()};
    if (literal("true")) return {json_arg::boolean, "true"};
    if (literal("false")) return {json_arg::boolean, "false"};
    if (c == '{') return {json_arg::bytes, base64_object()};
    if (literal("null")) fail("null is no argument");
    if (c == '[') fail("a nested array is no argument (list elements follow each other)");
    fail("a value expected");
  }

  std::string number() {
    std::size_t start = pos_;
    if (s_[pos_] == '-') ++pos_;
    std::size_t digits = pos_;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    if (pos_ == digits) fail("a digit expected");
    if (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E'))
      fail("only integers are arguments (no fraction or exponent)");
    return std::string(s_.substr(start, pos_ - start));
  }

  static void put_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += {char(0xc0 | cp >> 6), char(0x80 | (cp & 0x3f))};
    } else if (cp < 0x10000) {
      out += {char(0xe0 | cp >> 12), char(0x80 | (cp >> 6 & 0x3f)), char(0x80 | (cp & 0x3f))};
    } else {
      out += {char(0xf0 | cp >> 18), char(0x80 | (cp >> 12 & 0x3f)),
              char(0x80 | (cp >> 6 & 0x3f)), char(0x80 | (cp & 0x3f))};
    }
  }

  std::uint32_t hex4() {
    if (pos_ + 4 > s_.size()) fail("4 hex digits expected after \\u");
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char h = s_[pos_++];
      int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
              : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (d < 0) fail("a hex digit expected");
      v = v << 4 | unsigned(d);
    }
    return v;
  }

  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated string");
      char c = s_[pos_++];
      if (c == '"') break;
      if (static_cast<unsigned char>(c) < 0x20) fail("a control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated string");
      char e = s_[pos_++];
      switch (e) {
        case '"': case '\\': case '/': out += e; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = hex4();
          if (cp >= 0xd800 && cp < 0xdc00) {
            if (!literal("\\u")) fail("a lone surrogate");
            std::uint32_t low = hex4();
            if (low < 0xdc00 || low > 0xdfff) fail("a lone surrogate");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            fail("a lone surrogate");
          }
          put_utf8(out, cp);
          break;
        }
        default: fail("an unknown escape");
      }
    }
    return out;
  }

  static std::string decode_base64(std::string_view b64, bool& ok) {
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    std::size_t pad = 0;
    for (char c : b64) {
      int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
              : c >= '0' && c <= '9' ? c - '0' + 52 : c == '+' ? 62 : c == '/' ? 63 : -1;
      if (c == '=') {
        ++pad;
        continue;
      }
      if (v < 0 || pad) {
        ok = false;
        return {};
      }
      acc = acc << 6 | unsigned(v);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out += char(acc >> bits & 0xff);
      }
    }
    ok = pad <= 2 && bits < 6 && (acc & ((1u << bits) - 1)) == 0 &&
         (pad == 0 || (b64.size() % 4 == 0));
    return out;
  }

  std::string base64_object() {
    expect('{');
    if (peek() != '"' || string() != "base64") fail("an object must be {\"base64\": \"...\"}");
    expect(':');
    if (peek() != '"') fail("base64 text expected");
    std::string text = string();
    expect('}');
    bool ok = true;
    std::string bytes = decode_base64(text, ok);
    if (!ok) fail("malformed base64");
    return bytes;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

std::string shown(const json_arg& a) {
  if (a.kind == json_arg::bytes) return "base64 bytes";
  if (a.kind == json_arg::string) return "the string \"" + a.value.substr(0, 32) + "\"";
  return a.value;
}

bool is_integer(const std::string& v) {
  std::string_view d = v;
  if (d.starts_with('-')) d.remove_prefix(1);
  return !d.empty() && d.find_first_not_of("0123456789") == std::string_view::npos;
}

}  // namespace

std::vector<json_arg> parse_json_args(std::string_view json) {
  return json_reader(json).array();
}

message to_fields(const std::vector<json_arg>& args,
                  const std::vector<std::pair<std::string, std::string>>* params,
                  const std::string& method) {
  message out;
  for (const auto& a : args) out.push_back(a.value);
  if (!params) return out;
  bool list = !params->empty() && params->back().second.starts_with("list<") &&
              params->back().second.ends_with(">");
  std::size_t fixed = params->size() - (list ? 1 : 0);
  if (args.size() < fixed || (!list && args.size() > fixed)) {
    std::string sig;
    for (const auto& [name, type] : *params) sig += (sig.empty() ? "" : ", ") + name + ": " + type;
    throw usage_error(method + " takes " + (list ? "at least " : "") + std::to_string(fixed) +
                      " argument" + (fixed == 1 && !list ? "" : "s") + " (" + sig + "), -d gave " +
                      std::to_string(args.size()));
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto& [name, declared] = (*params)[std::min(i, params->size() - 1)];
    std::string type = i >= fixed ? declared.substr(5, declared.size() - 6) : declared;
    const json_arg& a = args[i];
    bool fits = true;
    if (type == "integer") fits = (a.kind == json_arg::number || a.kind == json_arg::string) && is_integer(a.value);
    if (type == "boolean") fits = a.kind == json_arg::boolean;
    if (type == "string") fits = a.kind == json_arg::string || a.kind == json_arg::number;
    if (type == "bytes") fits = a.kind == json_arg::string || a.kind == json_arg::bytes;
    if (!fits)
      throw usage_error(method + ": argument " + std::to_string(i + 1) + " (" + name +
                        ") is " + type + ", -d gave " + shown(a));
  }
  return out;
}

}  // namespace bokbok::tools::call
