// key::users_line (include/bokbok/key.hpp): a key as a line of a users file
// (src/crypto/users_file.hpp reads them).
#include <sodium.h>

#include <cstring>

#include "bokbok/key.hpp"
#include "crypto/secret.hpp"

namespace bokbok {

secret_text key::users_line(std::string_view user) const {
  // As the users file reads names: 1..255 bytes, no whitespace; a leading '#' would
  // make the line a comment.
  if (user.empty() || user.size() > 255 ||
      user.find_first_of(" \t\r\n\v\f") != std::string_view::npos || user.front() == '#')
    throw key_error("a user name has 1 to 255 bytes, no blanks, and does not start with #");
  // The line is built in locked memory too: "USER " + 64 hex digits + "\n".
  crypto::secret_bytes line(user.size() + 1 + 2 * size + 1 + 1);
  char* out = reinterpret_cast<char*>(line.data());
  std::memcpy(out, user.data(), user.size());
  out[user.size()] = ' ';
  sodium_bin2hex(out + user.size() + 1, 2 * size + 1, bytes_, size);  // NUL-terminated
  out[user.size() + 1 + 2 * size] = '\n';
  return secret_text(std::string_view(out, user.size() + 2 + 2 * size));
}

}  // namespace bokbok
