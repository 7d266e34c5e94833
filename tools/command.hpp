// The `bokbok` command's subcommands. Each lives in its own file and exports one
// `command` object; tools/main.cpp lists them in its table and dispatches.
#pragma once

#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace bokbok::tools {

using args_view = std::span<const std::string_view>;

struct command {
  std::string_view name;
  std::string_view summary;  // one line, shown by `bokbok --help`
  std::string_view help;     // full text for `bokbok help NAME` and `bokbok NAME --help`
  // Runs with the arguments after the subcommand's name (`--help` never reaches it).
  // Returns the exit status: 0 success, 1 failure. Throws usage_error for bad usage,
  // which main() reports with exit status 2.
  int (*run)(args_view args);
  // Where its options end, for a command whose later arguments are data (`bokbok call`:
  // its FIELDs): the index of the first argument that is no option, or of "--". main()
  // looks for --help only before it. nullptr: options end at "--" only.
  std::size_t (*options_end)(args_view args);
};

// Bad command-line usage; what() says what was wrong, without the program name.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A library message without its "bokbok: " prefix: the tool prints its own
// ("bokbok call: ...").
inline std::string without_prefix(std::string_view what) {
  if (what.starts_with("bokbok: ")) what.remove_prefix(8);
  return std::string(what);
}

// Reads options one by one: `--name VALUE` and `--name=VALUE` both work.
class arg_reader {
 public:
  explicit arg_reader(args_view args) : args_(args) {}

  bool done() const { return pos_ == args_.size(); }

  // The next argument, as an option name ("--seconds" for "--seconds=3").
  std::string_view next() {
    std::string_view arg = args_[pos_++];
    inline_value_ = {};
    has_inline_ = false;
    if (arg.starts_with("--")) {
      if (auto eq = arg.find('='); eq != std::string_view::npos) {
        inline_value_ = arg.substr(eq + 1);
        has_inline_ = true;
        arg = arg.substr(0, eq);
      }
    }
    current_ = arg;
    return arg;
  }

  // The value of the option just read by next().
  std::string_view value() {
    if (has_inline_) {
      has_inline_ = false;
      return inline_value_;
    }
    if (done()) throw usage_error(std::string(current_) + " needs a value");
    return args_[pos_++];
  }

  // Call after handling an option that takes no value.
  void no_value() const {
    if (has_inline_) throw usage_error(std::string(current_) + " takes no value");
  }

 private:
  args_view args_;
  std::size_t pos_ = 0;
  std::string_view current_;
  std::string_view inline_value_;
  bool has_inline_ = false;
};

// The subcommands (one per file).
extern const command call_command;
extern const command bench_command;
extern const command bridge_command;
extern const command keygen_command;
extern const command list_command;
extern const command describe_command;
extern const command ping_command;

}  // namespace bokbok::tools
