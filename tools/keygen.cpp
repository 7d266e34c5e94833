// `bokbok keygen`: makes key files for key mode (src/wire/PROTOCOL.md §9.2), from random
// bytes or from a passphrase, and prints the matching users-file line.
//
// The passphrase is read from stdin: one line, without echo when stdin is a terminal
// (then asked twice). It is held in locked memory and wiped after use.
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>

#include "bokbok/key.hpp"
#include "command.hpp"
#include "crypto/key_file.hpp"
#include "crypto/passphrase.hpp"
#include "crypto/secret.hpp"

namespace bokbok::tools {
namespace {

constexpr std::string_view help_text =
    "usage: bokbok keygen [--force] [--users-line USER] FILE\n"
    "       bokbok keygen --passphrase --realm REALM --user USER [--force]\n"
    "                     [--users-line USER] [FILE]\n"
    "       bokbok keygen --show-users-line USER FILE\n"
    "\n"
    "Writes a new key for key mode to FILE, as one line \"bokbok-key-v1 <64 hex digits>\"\n"
    "with mode 0600. Refuses to replace an existing FILE unless --force.\n"
    "\n"
    "options:\n"
    "  --passphrase       derive the key from a passphrase read from stdin (one line;\n"
    "                     asked twice, without echo, when stdin is a terminal) with\n"
    "                     Argon2id: 256 MiB of memory and about a second. The same\n"
    "                     passphrase, realm and user always give the same key.\n"
    "  --realm REALM      with --passphrase: the name of the deployment (for example\n"
    "                     backup.example.org), so keys differ between deployments\n"
    "  --user USER        with --passphrase: the user name the key is for\n"
    "  --users-line USER  also print the users-file line \"USER <hex key>\" for the\n"
    "                     server's users file (FILE may then be left out); with\n"
    "                     --passphrase, USER must be the --user the key is for\n"
    "  --show-users-line USER\n"
    "                     write nothing: read the existing key FILE and print its\n"
    "                     users-file line \"USER <hex key>\"\n"
    "  --force            replace FILE if it exists\n"
    "\n"
    "Exit status: 0 success; 1 failure (FILE exists, unreadable passphrase, ...); 2 bad\n"
    "usage.\n";

constexpr std::size_t max_passphrase = 1024;

// One line from fd 0 into locked memory, without its line end.
crypto::secret_bytes read_line(std::size_t& length) {
  crypto::secret_bytes buf(max_passphrase + 1);
  length = 0;
  for (;;) {
    char c;
    const ssize_t n = ::read(0, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error("cannot read the passphrase from stdin");
    if (n == 0 || c == '\n') break;
    if (length == max_passphrase)
      throw std::runtime_error("the passphrase is longer than 1024 bytes");
    buf.data()[length++] = static_cast<unsigned char>(c);
  }
  if (length > 0 && buf.data()[length - 1] == '\r') --length;
  return buf;
}

// Prompts on stderr and reads with echo off when stdin is a terminal.
crypto::secret_bytes read_passphrase_tty(const char* prompt, std::size_t& length) {
  std::fputs(prompt, stderr);
  std::fflush(stderr);
  termios old{};
  const bool tty = ::tcgetattr(0, &old) == 0;
  if (tty) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(0, TCSAFLUSH, &quiet);
  }
  std::optional<crypto::secret_bytes> line;
  try {
    line.emplace(read_line(length));
  } catch (...) {
    if (tty) ::tcsetattr(0, TCSAFLUSH, &old);
    throw;
  }
  if (tty) ::tcsetattr(0, TCSAFLUSH, &old);
  std::fputc('\n', stderr);
  return std::move(*line);
}

crypto::key key_from_passphrase(const std::string& realm, const std::string& user) {
  std::size_t len = 0;
  crypto::secret_bytes pass;
  if (::isatty(0)) {
    pass = read_passphrase_tty("passphrase: ", len);
    std::size_t len2 = 0;
    const auto again = read_passphrase_tty("passphrase again: ", len2);
    if (len != len2 || sodium_memcmp(pass.data(), again.data(), len) != 0)
      throw std::runtime_error("the two passphrases differ");
  } else {
    pass = read_line(len);
  }
  if (len == 0) throw std::runtime_error("the passphrase is empty");
  return crypto::derive_passphrase_key(
      std::string_view(reinterpret_cast<const char*>(pass.data()), len), realm, user);
}

int run(args_view args) {
  arg_reader r(args);
  bool passphrase = false, force = false;
  std::optional<std::string> realm, user, users_line, show_line, file;
  while (!r.done()) {
    const std::string_view a = r.next();
    if (a == "--passphrase") {
      r.no_value();
      passphrase = true;
    } else if (a == "--force") {
      r.no_value();
      force = true;
    } else if (a == "--realm") {
      realm = std::string(r.value());
    } else if (a == "--user") {
      user = std::string(r.value());
    } else if (a == "--users-line") {
      users_line = std::string(r.value());
    } else if (a == "--show-users-line") {
      show_line = std::string(r.value());
    } else if (a.starts_with("-") && a != "-") {
      throw usage_error("unknown option '" + std::string(a) + "'");
    } else if (file) {
      throw usage_error("takes one FILE");
    } else {
      file = std::string(a);
    }
  }
  if (show_line) {
    if (!file || passphrase || force || users_line)
      throw usage_error("--show-users-line USER takes one existing key FILE, and nothing else");
    users_line = show_line;
  }
  if (!file && !users_line) throw usage_error("needs a FILE (or --users-line USER)");
  if (passphrase && (!realm || !user)) throw usage_error("--passphrase needs --realm and --user");
  if (!passphrase && (realm || user)) throw usage_error("--realm and --user go with --passphrase");
  // A passphrase key is derived for one user name (the server checks it under that
  // name): a users-file line for another name could never authenticate.
  if (passphrase && users_line && user && *users_line != *user)
    throw usage_error("--users-line " + *users_line + " does not match --user " + *user +
                      ": a key derived from a passphrase for " + *user +
                      " authenticates only " + *user);
  for (const auto* name : {&users_line, &user})
    if (*name && ((*name)->empty() || (*name)->size() > 255 ||
                  (*name)->find_first_of(" \t\r\n") != std::string::npos))
      throw usage_error("a user name has 1 to 255 bytes and no blanks");
  struct stat st;
  if (show_line) {
    const crypto::key k = crypto::load_key_file(*file);
    std::string line = *show_line + " " + crypto::to_hex(k.bytes()) + "\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
    sodium_memzero(line.data(), line.size());
    std::fflush(stdout);
    return 0;
  }
  if (file && !force && ::lstat(file->c_str(), &st) == 0)
    throw std::runtime_error(*file + ": already exists; use --force to replace it");

  const crypto::key k = passphrase ? key_from_passphrase(*realm, *user) : crypto::key::random();
  if (file) crypto::save_key_file(*file, k, force);
  if (users_line) {
    std::string line = *users_line + " " + crypto::to_hex(k.bytes()) + "\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
    sodium_memzero(line.data(), line.size());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

const command keygen_command = {
    "keygen",
    "make a key file for key mode (random or from a passphrase)",
    help_text,
    run,
    nullptr,
};

}  // namespace bokbok::tools
