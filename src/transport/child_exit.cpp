// bokbok::child_exit::describe (include/bokbok/connection.hpp): transport's child_process
// words its end notes with it, so it lives here, below the public handle.
#include <cstring>
#include <string>

#include "bokbok/connection.hpp"

namespace bokbok {

std::string child_exit::describe() const {
  std::string who = "child " + std::to_string(pid);
  if (signal == 0) return who + " exited with status " + std::to_string(code);
  const char* name = sigabbrev_np(signal);
  return who + " was killed by signal " + std::to_string(signal) +
         (name ? std::string(" (SIG") + name + ")" : "");
}

}  // namespace bokbok
