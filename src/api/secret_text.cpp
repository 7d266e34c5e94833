// bokbok::secret_text and read_passphrase (include/bokbok/secret_text.hpp).
#include "bokbok/secret_text.hpp"

#include <sodium.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <optional>
#include <utility>

#include "bokbok/key.hpp"  // key_error
#include "crypto/secret.hpp"

namespace bokbok {

secret_text::secret_text(std::string_view text) {
  if (text.empty()) return;
  crypto::ensure_sodium();
  data_ = static_cast<char*>(sodium_malloc(text.size() + 1));
  if (!data_) throw std::bad_alloc();
  std::memcpy(data_, text.data(), text.size());
  data_[text.size()] = '\0';
  size_ = text.size();
}

secret_text::secret_text(secret_text&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

secret_text& secret_text::operator=(secret_text&& other) noexcept {
  if (this != &other) {
    secret_text old(std::move(*this));
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

secret_text::~secret_text() {
  if (data_) sodium_free(data_);  // zeroes the memory first
}

std::string_view secret_text::view() const noexcept {
  return data_ ? std::string_view(data_, size_) : std::string_view();
}

bool secret_text::equals(const secret_text& other) const noexcept {
  if (size_ != other.size_) return false;
  return size_ == 0 || sodium_memcmp(data_, other.data_, size_) == 0;
}

namespace {

// One line from `fd` into locked memory, without its line end.
secret_text read_line(int fd) {
  crypto::secret_bytes buf(max_passphrase_size + 1);
  std::size_t length = 0;
  for (;;) {
    char c;
    const ssize_t n = ::read(fd, &c, 1);  // byte by byte: nothing past the line is taken
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw key_error(std::string("cannot read the passphrase: ") + std::strerror(errno));
    if (n == 0 || c == '\n') break;
    if (length == max_passphrase_size)
      throw key_error("the passphrase is longer than " + std::to_string(max_passphrase_size) +
                      " bytes");
    buf.data()[length++] = static_cast<unsigned char>(c);
  }
  if (length > 0 && buf.data()[length - 1] == '\r') --length;
  return secret_text(std::string_view(reinterpret_cast<const char*>(buf.data()), length));
}

// Prompts on stderr and reads a line from the terminal `fd` with echo off, restoring
// the terminal's settings however the read ends.
secret_text read_line_quietly(int fd, std::string_view prompt) {
  (void)!::write(STDERR_FILENO, prompt.data(), prompt.size());
  termios old{};
  const bool tty = ::tcgetattr(fd, &old) == 0;
  if (tty) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  std::optional<secret_text> line;
  try {
    line.emplace(read_line(fd));
  } catch (...) {
    if (tty) ::tcsetattr(fd, TCSAFLUSH, &old);
    throw;
  }
  if (tty) ::tcsetattr(fd, TCSAFLUSH, &old);
  (void)!::write(STDERR_FILENO, "\n", 1);  // the Enter the terminal did not echo
  return std::move(*line);
}

}  // namespace

secret_text read_passphrase(int fd, std::string_view prompt, std::string_view confirm_prompt) {
  secret_text pass;
  if (::isatty(fd)) {
    pass = read_line_quietly(fd, prompt);
    if (!confirm_prompt.empty() && !pass.equals(read_line_quietly(fd, confirm_prompt)))
      throw key_error("the two passphrases differ");
  } else {
    pass = read_line(fd);
  }
  if (pass.empty()) throw key_error("the passphrase is empty");
  return pass;
}

}  // namespace bokbok
