// The ssh command line for an ssh: address (README "Addresses").
#pragma once

#include <string>
#include <vector>

#include "transport/address.hpp"

namespace bokbok::transport {

// ssh -xT -o BatchMode=yes [-p PORT] [-l USER] [EXTRA...] [OPTIONS...] -- HOST 'COMMAND'
//
// -x: no X11 forwarding; -T: no terminal, so the byte stream is untouched; BatchMode:
// never stop to ask for a password or a host key confirmation (there is nobody to
// answer: stdin is the protocol). The remote command goes as one argument, each word
// quoted for the remote shell, so spaces and quotes in arguments arrive intact. `--`
// keeps a host from being read as an option. The program is $BOKBOK_SSH if set (a path
// or a name on PATH), else "ssh".
std::vector<std::string> ssh_command(const ssh_address& a, const std::vector<std::string>& extra);

}  // namespace bokbok::transport
