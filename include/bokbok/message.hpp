// A bokbok message: an ordered list of binary-safe byte-string fields.
// By convention the first field names the method ("ping", "echo", ...).
#pragma once

#include <string>
#include <vector>

namespace bokbok {

// Each field may hold any bytes, NULs included; std::string is only the container.
using message = std::vector<std::string>;

}  // namespace bokbok
