// bokbok::args (include/bokbok/router.hpp): typed access to checked arguments, and the
// names of parameter types. The checks themselves are in router.cpp.
#include "bokbok/error.hpp"
#include "bokbok/router.hpp"

namespace bokbok {

const char* to_string(param_type type) noexcept {
  switch (type) {
    case param_type::bytes: return "bytes";
    case param_type::string: return "string";
    case param_type::integer: return "integer";
    case param_type::boolean: return "boolean";
  }
  return "unknown";
}

const param& args::declared(std::size_t i, param_type wanted) const {
  if (i >= params_.size())
    throw usage_error("bokbok: argument " + std::to_string(i) + " asked of a call with " +
                      std::to_string(params_.size()) + " argument" +
                      (params_.size() == 1 ? "" : "s"));
  const param& p = *params_[i];
  if (p.type != wanted)
    throw usage_error("bokbok: argument " + std::to_string(i) + " (" + p.name + ") is " +
                      to_string(p.type) + ", asked as " + to_string(wanted));
  return p;
}

const std::string& args::bytes(std::size_t i) const {
  if (i >= fields_.size()) declared(i, param_type::bytes);  // throws
  return fields_[i];
}

const std::string& args::text(std::size_t i) const {
  declared(i, param_type::string);
  return fields_[i];
}

std::int64_t args::integer(std::size_t i) const {
  declared(i, param_type::integer);
  return values_[i];
}

bool args::boolean(std::size_t i) const {
  declared(i, param_type::boolean);
  return values_[i] != 0;
}

}  // namespace bokbok
