// `bokbok bridge` when it ends key mode on a side (bridge_keys.cpp).
#pragma once

#include <string>

namespace bokbok::tools {

struct bridge_keys {
  std::string users_file;  // --users: side A accepts key-mode clients of this file
  std::string user;        // --user / --key-file: side B is reached in key mode
  std::string key_file;
  bool trace = false;      // -v, --trace: each side's frames on stderr
};

// Runs until either side closes. Exit status: 0 after a close; 3 when a side cannot be
// opened; 4 when key mode refused us on side B, or the client on side A.
int run_key_bridge(const std::string& address_a, const std::string& address_b,
                   const bridge_keys& keys);

}  // namespace bokbok::tools
