#include "transport/ssh_command.hpp"

#include <cstdlib>

#include "transport/command_line.hpp"

namespace bokbok::transport {

std::vector<std::string> ssh_command(const ssh_address& a, const std::vector<std::string>& extra) {
  const char* program = std::getenv("BOKBOK_SSH");
  std::vector<std::string> argv{program && *program ? program : "ssh", "-xT", "-o",
                                "BatchMode=yes"};
  if (!a.port.empty()) argv.insert(argv.end(), {"-p", a.port});
  if (!a.user.empty()) argv.insert(argv.end(), {"-l", a.user});
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.insert(argv.end(), a.ssh_options.begin(), a.ssh_options.end());
  argv.insert(argv.end(), {"--", a.host, shell_join(a.argv)});
  return argv;
}

}  // namespace bokbok::transport
