// `bokbok keygen`: makes key files for key mode (src/wire/PROTOCOL.md §9.2), from random
// bytes or from a passphrase, and prints the matching users-file line.
//
// The passphrase is read from stdin: one line, without echo when stdin is a terminal
// (then asked twice). It is held in locked memory and wiped after use.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>

#include "bokbok/key.hpp"
#include "bokbok/secret_text.hpp"
#include "command.hpp"

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

// The key the passphrase on stdin gives (asked twice, without echo, on a terminal).
key key_from_passphrase(const std::string& realm, const std::string& user) {
  const secret_text pass = read_passphrase(STDIN_FILENO, "passphrase: ", "passphrase again: ");
  return key::from_passphrase(pass.view(), realm, user);
}

// Prints the users-file line "USER <hex key>" for `k`.
void print_users_line(const key& k, const std::string& user) {
  const secret_text line = k.users_line(user);
  std::fwrite(line.view().data(), 1, line.size(), stdout);
  std::fflush(stdout);
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
    print_users_line(key::load(*file), *show_line);
    return 0;
  }
  if (file && !force && ::lstat(file->c_str(), &st) == 0)
    throw std::runtime_error(*file + ": already exists; use --force to replace it");

  const key k = passphrase ? key_from_passphrase(*realm, *user) : key::generate();
  if (file) k.save(*file, force);
  if (users_line) print_users_line(k, *users_line);
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
