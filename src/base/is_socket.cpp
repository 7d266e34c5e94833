#include "base/is_socket.hpp"

#include <sys/stat.h>

namespace bokbok::base {

bool is_socket(int fd) noexcept {
  struct stat st;
  return ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

}  // namespace bokbok::base
