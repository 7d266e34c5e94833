// Test support for key mode: one user, "alice", her key, and the lookup a server uses.
#pragma once

#include <memory>
#include <optional>
#include <string_view>

#include "bokbok/bokbok.hpp"

namespace bokbok_test {

struct alice_key {
  std::shared_ptr<const bokbok::key> alice =
      std::make_shared<const bokbok::key>(bokbok::key::generate());
  // Knows alice only: anyone else is an unknown user.
  bokbok::options::key_options::lookup lookup() const {
    auto k = alice;
    return [k](std::string_view user) -> std::optional<bokbok::key> {
      if (user == "alice") return k->clone();
      return std::nullopt;
    };
  }
};

}  // namespace bokbok_test
