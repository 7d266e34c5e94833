// `-v` / `--trace`: the frame trace on stderr (see trace_option.hpp).
#include "trace_option.hpp"

#include <unistd.h>

#include <cerrno>

namespace bokbok::tools {

void trace_to_stderr(options& opts, std::string where) {
  opts.trace = [prefix = std::move(where) + ": "](std::string_view line) {
    std::string text = prefix;
    text += line;
    text += '\n';
    std::string_view rest = text;
    while (!rest.empty()) {
      ssize_t r = ::write(STDERR_FILENO, rest.data(), rest.size());
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return;  // stderr is gone: the trace is lost, nothing else
      rest.remove_prefix(std::size_t(r));
    }
  };
}

}  // namespace bokbok::tools
