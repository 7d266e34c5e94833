// `bokbok describe`: one method's description and signature, the server's protocol
// version and features (bokbok.describe, PROTOCOL.md §11.2).
#include <cstdio>
#include <string>

#include "command.hpp"
#include "introspect.hpp"

namespace bokbok::tools::describe {
namespace {

constexpr auto help_chars = introspect::join_help(
    "usage: bokbok describe [options] ADDRESS METHOD\n"
    "\n"
    "Asks the server at ADDRESS (as `bokbok call` takes it) to describe METHOD\n"
    "(bokbok.describe) and prints:\n"
    "  METHOD PARAM:TYPE... [stream:KIND]\n"
    "                           the signature (a list parameter's type is list<T>);\n"
    "                           a stream method (open it with `bokbok call --stream`)\n"
    "                           ends with stream:out (the server streams), stream:in\n"
    "                           (the caller streams) or stream:both\n"
    "  DESCRIPTION\n"
    "  protocol V, features F...\n"
    "Types: bytes, string, integer, boolean (PROTOCOL.md §11.1).\n"
    "\n"
    "options:\n"
    "  --json              print one line: a JSON object {\"name\", \"description\",\n"
    "                      \"parameters\": [{\"name\", \"type\"}...], \"protocol\" (a number),\n"
    "                      \"features\": [...]}; a stream method adds \"stream\":\n"
    "                      \"out\", \"in\" or \"both\"\n",
    introspect::shared_options_help,
    "\n"
    "exit status: as `bokbok call`; an unknown METHOD is a remote error\n"
    "(no_such_method), status 1.\n"
    "\n"
    "example:\n"
    "  bokbok describe 'exec:bokbok-demo-server --stdio' add\n");
constexpr std::string_view help_text = introspect::help_view(help_chars);

std::string words_json(const std::string& words) {
  std::string out = "[";
  std::size_t start = 0;
  bool first = true;
  while (start < words.size()) {
    std::size_t end = words.find(' ', start);
    if (end == std::string::npos) end = words.size();
    if (end > start) {
      out += (first ? "" : ", ") + introspect::json_value(words.substr(start, end - start));
      first = false;
    }
    start = end + 1;
  }
  return out + "]";
}

int run(args_view args) {
  auto o = introspect::parse(args);
  if (o.operands.size() != 2) throw usage_error("takes ADDRESS and METHOD");
  auto answer = introspect::ask("describe", o, {"bokbok.describe", o.operands[1]});
  if (auto* status = std::get_if<int>(&answer)) return *status;
  auto d = introspect::parse_description(std::get<message>(answer));
  std::string out;
  if (o.json) {
    out = "{\"name\": " + introspect::json_value(d.name) +
          ", \"description\": " + introspect::json_value(d.description) + ", \"parameters\": [";
    for (std::size_t i = 0; i < d.params.size(); ++i)
      out += std::string(i ? ", " : "") + "{\"name\": " + introspect::json_value(d.params[i].first) +
             ", \"type\": " + introspect::json_value(d.params[i].second) + "}";
    bool numeric = !d.protocol.empty() && d.protocol.find_first_not_of("0123456789") == std::string::npos;
    out += "], \"protocol\": " + (numeric ? d.protocol : introspect::json_value(d.protocol)) +
           ", \"features\": " + words_json(d.features) +
           (d.stream.empty() ? "" : ", \"stream\": " + introspect::json_value(d.stream)) + "}\n";
  } else {
    out = d.name;
    for (const auto& [name, type] : d.params) out += " " + name + ":" + type;
    if (!d.stream.empty()) out += " stream:" + d.stream;
    out += "\n  " + d.description + "\nprotocol " + d.protocol + ", features " +
           (d.features.empty() ? "none" : d.features) + "\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return std::fflush(stdout) == 0 ? introspect::exit_ok : introspect::exit_remote_error;
}

}  // namespace
}  // namespace bokbok::tools::describe

namespace bokbok::tools {
const command describe_command = {"describe", "describe one method of a server",
                                  describe::help_text, describe::run, nullptr};
}  // namespace bokbok::tools
