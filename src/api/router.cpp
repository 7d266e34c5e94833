// bokbok::router (include/bokbok/router.hpp): registration, dispatch with arity and type
// checks, and the introspection methods of PROTOCOL.md §11.
#include "bokbok/router.hpp"

#include <charconv>
#include <limits>
#include <map>
#include <utility>

#include "bokbok/error.hpp"
#include "wire/preamble.hpp"
#include "wire/settings.hpp"

namespace bokbok {

struct router::entry {
  method_info info;
  method_handler run;                // a plain method
  stream_method_handler run_stream;  // a stream method
};

namespace {

constexpr std::string_view reserved_prefix = "bokbok.";
constexpr std::size_t shown_bytes = 32;  // of a bad value, in an error message

[[noreturn]] void bad_arguments(const std::string& why) {
  throw remote_error(error_code::bad_arguments, why);
}

// A value as an error message shows it: at most shown_bytes, printable ASCII as is,
// other bytes as \xHH, quotes and backslashes escaped.
std::string shown(std::string_view value) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "'";
  for (unsigned char c : value.substr(0, shown_bytes)) {
    if (c == '\\' || c == '\'') {
      out += {'\\', char(c)};
    } else if (c < 0x20 || c >= 0x7f) {
      out += {'\\', 'x', hex[c >> 4], hex[c & 15]};
    } else {
      out += char(c);
    }
  }
  out += value.size() > shown_bytes ? "'..." : "'";
  return out;
}

// Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past U+10FFFF.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    std::size_t more = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 9;
    if (more == 9 || i + more >= s.size()) return false;
    std::uint32_t cp = more == 0 ? c : c & (0x3f >> more);
    for (std::size_t k = 1; k <= more; ++k) {
      unsigned char d = s[i + k];
      if ((d & 0xc0) != 0x80) return false;
      cp = cp << 6 | (d & 0x3f);
    }
    static constexpr std::uint32_t least[] = {0, 0x80, 0x800, 0x10000};
    if (cp < least[more] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += more + 1;
  }
  return true;
}

// Decimal: an optional '-', then one or more digits, within int64.
bool parse_integer(std::string_view s, std::int64_t& out) {
  std::string_view digits = s.starts_with('-') ? s.substr(1) : s;
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos)
    return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

std::string type_text(const param& p) {
  return p.list ? "list<" + std::string(to_string(p.type)) + ">" : to_string(p.type);
}

// "ping takes 1 argument (text: string), got 0"
std::string arity_text(const method_info& m, std::size_t got) {
  std::size_t fixed = m.params.size() - (!m.params.empty() && m.params.back().list);
  bool list = fixed != m.params.size();
  std::string out = m.name + " takes ";
  out += list ? "at least " + std::to_string(fixed) : std::to_string(fixed);
  out += (fixed == 1 && !list) ? " argument" : " arguments";
  if (!m.params.empty()) {
    out += " (";
    for (std::size_t i = 0; i < m.params.size(); ++i)
      out += (i ? ", " : "") + m.params[i].name + ": " + type_text(m.params[i]);
    out += ")";
  }
  return out + ", got " + std::to_string(got);
}

const char* what_is_wanted(param_type t) {
  switch (t) {
    case param_type::string: return "a string (valid UTF-8)";
    case param_type::integer: return "an integer (decimal, within 64-bit signed)";
    case param_type::boolean: return "a boolean (true or false)";
    case param_type::bytes: break;
  }
  return "bytes";
}

// Checks the request's arguments against m's signature and builds the handler's args.
void check_into(const method_info& m, message& request, message& fields,
                std::vector<std::int64_t>& values, std::vector<const param*>& params) {
  const std::size_t got = request.size() - 1;
  const std::size_t fixed = m.params.size() - (!m.params.empty() && m.params.back().list);
  const bool list = fixed != m.params.size();
  if (got < fixed || (!list && got > fixed)) bad_arguments(arity_text(m, got));
  fields.assign(std::make_move_iterator(request.begin() + 1),
                std::make_move_iterator(request.end()));
  values.assign(got, 0);
  params.resize(got);
  for (std::size_t i = 0; i < got; ++i) {
    const param& p = m.params[std::min(i, m.params.size() - 1)];
    params[i] = &p;
    const std::string& f = fields[i];
    bool ok = true;
    switch (p.type) {
      case param_type::bytes: break;
      case param_type::string: ok = valid_utf8(f); break;
      case param_type::integer: ok = parse_integer(f, values[i]); break;
      case param_type::boolean:
        ok = f == "true" || f == "false";
        values[i] = f == "true";
        break;
    }
    if (!ok)
      bad_arguments(m.name + ": argument " + std::to_string(i + 1) + " (" + p.name +
                    ") must be " + what_is_wanted(p.type) + ", got " + shown(f));
  }
}

std::string feature_names() {
  std::string out;
  if (wire::features_supported & wire::feature_deadline) out += "deadline";
  if (wire::features_supported & wire::feature_notify) out += out.empty() ? "notify" : " notify";
  if (wire::features_supported & wire::feature_stream) out += out.empty() ? "stream" : " stream";
  return out;
}

// A stream call to a plain method, or a plain request to a stream method.
void check_call_kind(const method_info& m, bool stream_call) {
  if (m.stream && !stream_call)
    bad_arguments(m.name + " is a stream method: open it as a stream (bokbok call --stream)");
  if (!m.stream && stream_call)
    bad_arguments(m.name + " is not a stream method: call it with a plain request " +
                  "(bokbok call without --stream)");
}

// Checks a registration (add, add_stream); throws usage_error.
void check_registration(const std::string& name, const std::vector<param>& params,
                        bool has_handler, const std::vector<std::string_view>& taken) {
  if (name.empty()) throw usage_error("bokbok: router::add: empty method name");
  if (name.starts_with(reserved_prefix))
    throw usage_error("bokbok: router::add: " + name + ": the bokbok. namespace is reserved");
  for (std::string_view t : taken)
    if (t == name) throw usage_error("bokbok: router::add: " + name + " is already registered");
  for (std::size_t i = 0; i + 1 < params.size(); ++i)
    if (params[i].list)
      throw usage_error("bokbok: router::add: " + name + ": only the last parameter may be a list");
  if (!has_handler) throw usage_error("bokbok: router::add: " + name + ": no handler");
}

// The introspection methods' own signatures, described like any other.
const method_info list_info{"bokbok.list", "the methods: name and description of each", {}, std::nullopt};
const method_info describe_info{
    "bokbok.describe",
    "a method's description, parameters, the protocol version and features",
    {{"method", param_type::string, false}},
    std::nullopt};

}  // namespace

router::router() = default;
router::~router() = default;
router::router(router&&) noexcept = default;
router& router::operator=(router&&) noexcept = default;

const char* to_string(stream_kind kind) noexcept {
  switch (kind) {
    case stream_kind::out: return "out";
    case stream_kind::in: return "in";
    case stream_kind::both: return "both";
  }
  return "unknown";
}

router& router::add(std::string name, std::string description, std::vector<param> params,
                    method_handler run) {
  std::vector<std::string_view> taken;
  for (const auto& e : entries_) taken.push_back(e->info.name);
  check_registration(name, params, bool(run), taken);
  entries_.push_back(std::make_shared<const entry>(entry{
      {std::move(name), std::move(description), std::move(params), std::nullopt},
      std::move(run),
      {}}));
  return *this;
}

router& router::add_stream(std::string name, std::string description,
                           std::vector<param> params, stream_kind kind,
                           stream_method_handler run) {
  std::vector<std::string_view> taken;
  for (const auto& e : entries_) taken.push_back(e->info.name);
  check_registration(name, params, bool(run), taken);
  entries_.push_back(std::make_shared<const entry>(
      entry{{std::move(name), std::move(description), std::move(params), kind},
            {},
            std::move(run)}));
  return *this;
}

std::vector<method_info> router::methods() const {
  std::vector<method_info> out;
  for (const auto& e : entries_) out.push_back(e->info);
  return out;
}

request_handler router::handler() const {
  auto by_name = std::make_shared<std::map<std::string, std::shared_ptr<const entry>, std::less<>>>();
  for (const auto& e : entries_) by_name->emplace(e->info.name, e);
  auto in_order = std::make_shared<const decltype(entries_)>(entries_);
  return [by_name, in_order](connection& conn, message request) -> message {
    if (request.empty())
      throw remote_error(error_code::no_such_method,
                         "empty request: the first field names the method");
    const std::string& name = request[0];
    stream call = this_call::stream();  // empty unless this is a stream call
    if (name == list_info.name) {
      check_call_kind(list_info, bool(call));
      message f;
      std::vector<std::int64_t> v;
      std::vector<const param*> p;
      check_into(list_info, request, f, v, p);
      message out;
      for (const auto& e : *in_order) out.insert(out.end(), {e->info.name, e->info.description});
      for (const method_info* m : {&list_info, &describe_info})
        out.insert(out.end(), {m->name, m->description});
      return out;
    }
    if (name == describe_info.name) {
      check_call_kind(describe_info, bool(call));
      message f;
      std::vector<std::int64_t> v;
      std::vector<const param*> p;
      check_into(describe_info, request, f, v, p);
      const method_info* m = nullptr;
      if (f[0] == list_info.name) m = &list_info;
      if (f[0] == describe_info.name) m = &describe_info;
      if (auto it = by_name->find(f[0]); it != by_name->end()) m = &it->second->info;
      if (!m) throw remote_error(error_code::no_such_method, "unknown method: " + shown(f[0]));
      message out{m->name, m->description, std::to_string(wire::protocol_version),
                  feature_names()};
      for (const param& q : m->params) out.insert(out.end(), {q.name, type_text(q)});
      if (m->stream) out.insert(out.end(), {"", std::string("stream:") + to_string(*m->stream)});
      return out;
    }
    auto it = by_name->find(name);
    if (it == by_name->end())
      throw remote_error(error_code::no_such_method, "unknown method: " + shown(name));
    const entry& e = *it->second;
    check_call_kind(e.info, bool(call));
    args a;
    check_into(e.info, request, a.fields_, a.values_, a.params_);
    return e.info.stream ? e.run_stream(conn, a, call) : e.run(conn, a);
  };
}

}  // namespace bokbok
