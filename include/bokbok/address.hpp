// Addresses as values: parsed once, checked, printed (README "Addresses").
//
//   auto a = bokbok::address::parse("unix:/run/app.sock");
//   if (a.type() == bokbok::address::kind::unix_socket) ...
//   std::string text = bokbok::address::exec({"app", "--stdio"}).to_string();
//
// connect(), open_byte_channel() and server_options::listen take the same text; parsing
// it here first lets a program reject a bad address before doing any work, tell what
// it names, or build one from words without quoting them by hand.
//
// Thread-safety: an address is immutable; copies share it and may be used from any
// thread.
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "bokbok needs C++20: compile with -std=c++20 (or later); g++ 12 defaults to C++17"
#endif

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bokbok/error.hpp"
#include "bokbok/export.hpp"

namespace bokbok {

class BOKBOK_API address final {
 public:
  enum class kind {
    fd,           // fd:R,W
    stdio,        // stdio
    tcp,          // tcp:HOST:PORT (tcp:*:PORT too, which is for listening), or a list
                  // to connect to: tcp:HOST:PORT,HOST:PORT,... (options::address_choice)
    unix_socket,  // unix:PATH, unix:@NAME
    inetd,        // inetd (for listening)
    systemd,      // systemd (for listening)
    exec,         // exec:COMMAND ARG...
    ssh,          // ssh:[USER@]HOST[:PORT] COMMAND ARG...
  };

  // Parses `text`; throws address_error quoting it and saying what was expected.
  static address parse(std::string_view text);

  // The exec: address that runs `argv` (argv[0] a path, or a name searched on PATH),
  // each word quoted so that parsing gives back exactly these words. Throws
  // address_error when argv is empty.
  static address exec(const std::vector<std::string>& argv);

  kind type() const noexcept;

  // The canonical text ("fd:3,4", "tcp:[::1]:80", "unix:@name", "exec:app --stdio"):
  // parse(a.to_string()) names the same thing. Connection errors name addresses so.
  std::string to_string() const;

  // True for what a client can open (connect(), open_byte_channel()): every kind but
  // inetd, systemd and tcp:*:PORT, which name sockets to listen on.
  bool connectable() const noexcept;

  // True when opening it reads this process's standard input: stdio, inetd, and an
  // fd: address whose read descriptor is 0.
  bool reads_stdin() const noexcept;

  // The descriptors of an fd:R,W address (in_fd() == out_fd() for fd:N,N); -1 for
  // every other kind.
  int in_fd() const noexcept;
  int out_fd() const noexcept;

  struct parsed;  // the library's form (src/api/address.cpp)
  explicit address(std::shared_ptr<const parsed> p) noexcept;
  const parsed& internal() const noexcept { return *p_; }

 private:
  std::shared_ptr<const parsed> p_;
};

}  // namespace bokbok
