// The shared part of `bokbok list` and `bokbok describe` (introspect.hpp).
#include "introspect.hpp"

#include <bokbok/bokbok.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "call_output.hpp"
#include "trace_option.hpp"

namespace bokbok::tools::introspect {

common_options parse(args_view args) {
  common_options o;
  o.timeout = 10;
  arg_reader reader(args);
  bool operands_only = false;
  while (!reader.done()) {
    std::string_view arg = reader.next();
    if (operands_only || arg == "-" || !arg.starts_with('-')) {
      o.operands.emplace_back(arg);
    } else if (arg == "--") {
      operands_only = true;
    } else if (arg == "--json") {
      reader.no_value();
      o.json = true;
    } else if (is_trace_option(arg)) {
      reader.no_value();
      o.trace = true;
    } else if (o.take(arg, reader)) {
    } else {
      throw usage_error("unknown option '" + std::string(arg) + "'");
    }
  }
  o.check();
  if (o.operands.empty()) throw usage_error("no ADDRESS given");
  return o;
}

namespace {

int failure(std::string_view where, int status, const std::string& why) {
  std::fprintf(stderr, "bokbok %.*s: %s\n", int(where.size()), where.data(), why.c_str());
  return status;
}

}  // namespace

std::variant<message, int> ask(std::string_view where, const common_options& o,
                               message request) {
  const std::string& address = o.operands.at(0);
  try {
    (void)bokbok::address::parse(address);
  } catch (const address_error& e) {
    throw usage_error(without_prefix(e.what()));
  }
  auto limit = std::chrono::milliseconds(static_cast<long long>(o.timeout * 1000));
  options opts;
  opts.connect_timeout = limit;
  if (o.trace) trace_to_stderr(opts, "bokbok " + std::string(where));
  opts.on_request = [](connection&, message) -> message {
    throw remote_error(error_code::no_such_method, "this client answers no requests");
  };
  o.apply_keys(opts);
  try {
    connection conn = connect(address, opts);
    bokbok::call_options copts;
    copts.timeout = limit;
    message answer;
    // What the router answers for a describe of a method it does not have (§11.2);
    // any other no_such_method means the server has no introspection at all.
    std::string unknown_to_router =
        request.size() == 2 ? "unknown method: '" + request[1] + "'" : std::string();
    try {
      answer = conn.request(std::move(request), copts);
    } catch (const remote_error& e) {
      conn.close();
      conn.wait_closed();
      std::string why = "remote error (" + std::string(to_string(e.code())) + "): " + e.message();
      if (e.code() == error_code::no_such_method && e.message() != unknown_to_router)
        why += " (the server offers no introspection)";
      return failure(where, exit_remote_error, why);
    }
    conn.close();
    conn.wait_closed();
    return answer;
  } catch (const call_error& e) {
    if (e.code() == error_code::deadline_exceeded)
      return failure(where, exit_timed_out, "timed out");
    return failure(where, exit_remote_error, without_prefix(e.what()));
  } catch (const authentication_error& e) {
    return failure(where, exit_auth, without_prefix(e.what()));
  } catch (const error& e) {
    return failure(where, exit_transport, without_prefix(e.what()));
  }
}

description parse_description(const message& a) {
  if (a.size() < 4 || a.size() % 2 != 0)
    throw std::runtime_error("the server's bokbok.describe answer has " +
                             std::to_string(a.size()) +
                             " fields, not 4 and then two per parameter");
  description d{a[0], a[1], a[2], a[3], {}, {}};
  for (std::size_t i = 4; i + 1 < a.size(); i += 2) d.params.emplace_back(a[i], a[i + 1]);
  if (!d.params.empty() && d.params.back().first.empty()) {
    const std::string& marker = d.params.back().second;
    if (!marker.starts_with("stream:") || marker.size() == 7)
      throw std::runtime_error("the server's bokbok.describe answer ends with an unnamed pair "
                               "that is not a stream marker (stream:KIND)");
    d.stream = marker.substr(7);
    d.params.pop_back();
  }
  return d;
}

std::string json_value(std::string_view field) {
  if (call::is_json_text(field)) return call::json_string(field);
  return "{\"base64\": \"" + call::base64(field) + "\"}";
}

}  // namespace bokbok::tools::introspect
