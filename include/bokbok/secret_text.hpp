// Secret text: passphrases and key material as text, held like keys are.
//
//   bokbok::secret_text pass = bokbok::read_passphrase(0, "passphrase: ", "again: ");
//   auto k = bokbok::key::from_passphrase(pass.view(), "myapp.example.org", "alice");
//   bokbok::secret_text line = k.users_line("alice");   // "alice <64 hex>\n"
//
// A secret_text owns its bytes in locked memory (not swapped out where the system
// allows it), wiped when it is destroyed. It is move-only; a moved-from one is empty.
//
// Thread-safety: const members may be called from several threads at once.
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "bokbok needs C++20: compile with -std=c++20 (or later); g++ 12 defaults to C++17"
#endif

#include <cstddef>
#include <string_view>

#include "bokbok/error.hpp"

namespace bokbok {

class secret_text final {
 public:
  secret_text() noexcept = default;  // empty
  // A copy of `text` in locked memory (the caller wipes its own copy). Throws
  // std::bad_alloc when locked memory cannot be had.
  explicit secret_text(std::string_view text);
  secret_text(secret_text&& other) noexcept;
  secret_text& operator=(secret_text&& other) noexcept;
  secret_text(const secret_text&) = delete;
  secret_text& operator=(const secret_text&) = delete;
  ~secret_text();

  // The text; valid while this object lives and is not assigned to.
  std::string_view view() const noexcept;
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  // Compares without leaking, through timing, where two texts of equal length differ
  // (texts of different lengths are unequal at once).
  bool equals(const secret_text& other) const noexcept;

 private:
  char* data_ = nullptr;  // size_ + 1 bytes from sodium_malloc; null when empty
  std::size_t size_ = 0;
};

// The longest passphrase read_passphrase() accepts, in bytes.
inline constexpr std::size_t max_passphrase_size = 1024;

// Reads a passphrase: one line from `fd`, without its line end ("\n" or "\r\n"), straight
// into locked memory. When `fd` is a terminal, `prompt` is written to stderr first and
// the line is read with echo off; given a `confirm_prompt`, it is then asked for again
// and both must match. When `fd` is not a terminal, nothing is written and the line is
// read once. Blocks until a line (or end of file) comes. Throws key_error (declared in
// bokbok/key.hpp, which includes this header) when the passphrase is empty, longer than
// max_passphrase_size, cannot be read, or the two differ.
secret_text read_passphrase(int fd, std::string_view prompt,
                            std::string_view confirm_prompt = {});

}  // namespace bokbok
