// `bokbok list`: the methods a server offers (bokbok.list, PROTOCOL.md §11.2).
#include <cstdio>
#include <string>

#include "command.hpp"
#include "introspect.hpp"

namespace bokbok::tools::list {
namespace {

constexpr auto help_chars = introspect::join_help(
    "usage: bokbok list [options] ADDRESS\n"
    "\n"
    "Asks the server at ADDRESS (as `bokbok call` takes it) for its methods\n"
    "(bokbok.list) and prints one per line: the name, then the description.\n"
    "A server without a router answers no_such_method (exit status 1).\n"
    "\n"
    "options:\n"
    "  --json              print one line: a JSON array of objects\n"
    "                      {\"name\": ..., \"description\": ...}, fields that are not text\n"
    "                      as {\"base64\": \"...\"} like `call --json`\n",
    introspect::shared_options_help,
    "\n"
    "exit status: as `bokbok call`: 0 printed, 1 remote error, 2 bad usage,\n"
    "3 could not connect, 4 authentication refused, 5 timed out.\n"
    "\n"
    "example:\n"
    "  bokbok list 'exec:bokbok-demo-server --stdio'\n");
constexpr std::string_view help_text = introspect::help_view(help_chars);

int run(args_view args) {
  auto o = introspect::parse(args);
  if (o.operands.size() != 1) throw usage_error("takes one ADDRESS");
  auto answer = introspect::ask("list", o, {"bokbok.list"});
  if (auto* status = std::get_if<int>(&answer)) return *status;
  const message& m = std::get<message>(answer);
  if (m.size() % 2 != 0) {
    std::fprintf(stderr, "bokbok list: the server's answer has an odd number of fields\n");
    return introspect::exit_remote_error;
  }
  std::string out;
  if (o.json) {
    out = "[";
    for (std::size_t i = 0; i < m.size(); i += 2)
      out += std::string(i ? ", " : "") + "{\"name\": " + introspect::json_value(m[i]) +
             ", \"description\": " + introspect::json_value(m[i + 1]) + "}";
    out += "]\n";
  } else {
    std::size_t width = 0;
    for (std::size_t i = 0; i < m.size(); i += 2) width = std::max(width, m[i].size());
    for (std::size_t i = 0; i < m.size(); i += 2)
      out += m[i] + std::string(width - m[i].size() + 2, ' ') + m[i + 1] + "\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return std::fflush(stdout) == 0 ? introspect::exit_ok : introspect::exit_remote_error;
}

}  // namespace
}  // namespace bokbok::tools::list

namespace bokbok::tools {
const command list_command = {"list", "list the methods a server offers", list::help_text,
                              list::run, nullptr};
}  // namespace bokbok::tools
