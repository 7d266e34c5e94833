// `bokbok`: the command-line tool. Subcommands live in their own files (bench.cpp, ...)
// and are listed in `commands` below; this file only dispatches and prints help.
//
// Exit status: 0 success, 1 failure at run time, 2 bad usage (message on stderr); a
// command may give more statuses their own meaning (`bokbok call`: 3 to 5).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "bokbok/log.hpp"
#include "command.hpp"

#ifndef BOKBOK_VERSION
#define BOKBOK_VERSION "unknown"
#endif

namespace bokbok::tools {
namespace {

// Add a subcommand here (and its file to tools/meson.build).
const command* const commands[] = {
    &call_command,
    &list_command,
    &describe_command,
    &bench_command,
    &bridge_command,
    &keygen_command,
    &ping_command,
};

const command* find_command(std::string_view name) {
  for (const command* c : commands)
    if (c->name == name) return c;
  return nullptr;
}

void print_main_help() {
  std::printf(
      "usage: bokbok COMMAND [ARGS...]\n"
      "       bokbok help COMMAND\n"
      "\n"
      "bokbok: secure, symmetric RPC between processes.\n"
      "\n"
      "commands:\n");
  for (const command* c : commands)
    std::printf("  %-10.*s %.*s\n", int(c->name.size()), c->name.data(),
                int(c->summary.size()), c->summary.data());
  std::printf(
      "  %-10s %s\n"
      "\n"
      "options:\n"
      "  --help     show this help and exit\n"
      "  --version  show the version and exit\n"
      "\n"
      "environment:\n"
      "  BOKBOK_LOG  the library's log on stderr: debug, info, warning (default),\n"
      "              error or off\n"
      "  BOKBOK_TRACE\n"
      "              set (not 0): every frame of every connection on stderr, decoded\n"
      "              (as -v / --trace of the commands that connect)\n",
      "help", "show the help of a command");
}

void print_command_help(const command& c) {
  std::fwrite(c.help.data(), 1, c.help.size(), stdout);
  if (!c.help.ends_with('\n')) std::putchar('\n');
}

int usage_failure(std::string_view where, const std::string& why, std::string_view hint) {
  std::fprintf(stderr, "%.*s: %s\ntry '%.*s'\n", int(where.size()), where.data(),
               why.c_str(), int(hint.size()), hint.data());
  return 2;
}

int run_help(const std::vector<std::string_view>& args) {
  if (args.empty()) {
    print_main_help();
    return 0;
  }
  if (args.size() > 1)
    return usage_failure("bokbok help", "takes one COMMAND", "bokbok --help");
  if (args[0] == "help") {
    std::printf("usage: bokbok help COMMAND\n\nShows the help of COMMAND.\n");
    return 0;
  }
  const command* c = find_command(args[0]);
  if (!c)
    return usage_failure("bokbok help", "unknown command '" + std::string(args[0]) + "'",
                         "bokbok --help");
  print_command_help(*c);
  return 0;
}

// True if the arguments ask for help. Looks only at the command's options: after "--"
// (or, for `bokbok call`, from its first FIELD on) arguments are data
// (`bokbok call ADDRESS echo --help` sends "--help" as a message field).
bool asks_for_help(const command& c, const std::vector<std::string_view>& args) {
  std::size_t end = c.options_end ? c.options_end(args) : args.size();
  for (std::size_t i = 0; i < end && i < args.size(); ++i) {
    if (args[i] == "--") return false;
    if (args[i] == "--help" || args[i] == "-h") return true;
  }
  return false;
}

// The library's log (bokbok/log.hpp) goes to stderr, never stdout (`bokbok call` prints
// answers there; `bokbok bridge stdio` speaks the protocol there): warnings and errors by
// default, BOKBOK_LOG=debug|info|warning|error|off to choose.
void route_library_log(const std::string& where) {
  auto level = bokbok::log_level::warning;
  if (const char* env = std::getenv("BOKBOK_LOG"); env && *env) {
    if (std::string_view(env) == "off") return;
    if (auto chosen = bokbok::parse_log_level(env))
      level = *chosen;
    else
      std::fprintf(stderr, "%s: BOKBOK_LOG=%s is no level (debug, info, warning, error, off)\n",
                   where.c_str(), bokbok::log_safe(env, 32).c_str());
  }
  bokbok::set_log_sink(bokbok::log_to_stderr(where), level);
}

int run_command(const command& c, const std::vector<std::string_view>& args) {
  if (asks_for_help(c, args)) {
    print_command_help(c);
    return 0;
  }
  std::string where = "bokbok " + std::string(c.name);
  route_library_log(where);
  try {
    return c.run(args);
  } catch (const usage_error& e) {
    return usage_failure(where, without_prefix(e.what()), "bokbok help " + std::string(c.name));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", where.c_str(), without_prefix(e.what()).c_str());
    return 1;
  }
}

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty()) return usage_failure("bokbok", "no command given", "bokbok --help");
  std::string_view first = args[0];
  std::vector<std::string_view> rest(args.begin() + 1, args.end());
  if (first == "--help" || first == "-h") {
    print_main_help();
    return 0;
  }
  if (first == "--version") {
    std::printf("bokbok %s\n", BOKBOK_VERSION);
    return 0;
  }
  if (first == "help") return run_help(rest);
  if (const command* c = find_command(first)) return run_command(*c, rest);
  if (first.starts_with('-'))
    return usage_failure("bokbok", "unknown option '" + std::string(first) + "'",
                         "bokbok --help");
  return usage_failure("bokbok", "unknown command '" + std::string(first) + "'",
                       "bokbok --help");
}

}  // namespace
}  // namespace bokbok::tools

int main(int argc, char** argv) { return bokbok::tools::main(argc, argv); }
