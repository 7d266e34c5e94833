// A bokbok message: an ordered list of binary-safe byte-string fields.
// By convention the first field names the method ("ping", "echo", ...).
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "bokbok needs C++20: compile with -std=c++20 (or later); g++ 12 defaults to C++17"
#endif

#include <string>
#include <vector>

namespace bokbok {

// Each field may hold any bytes, NULs included; std::string is only the container.
using message = std::vector<std::string>;

}  // namespace bokbok
