// A method router: register methods by name, with a one-line description and a signature
// of named, typed parameters, and get one request_handler that dispatches on the first
// field, checks arity and types, and answers the introspection methods `bokbok.list` and
// `bokbok.describe` (PROTOCOL.md §11). Optional: a raw options::on_request works as ever.
//
//   bokbok::router r;
//   r.add("add", "adds two integers", {{"a", bokbok::param_type::integer},
//                                      {"b", bokbok::param_type::integer}},
//         [](bokbok::connection&, bokbok::args& a) -> bokbok::message {
//           return {std::to_string(a.integer(0) + a.integer(1))};
//         });
//   opts.on_request = r.handler();
//
// Arguments travel as fields (bytes). Encodings (PROTOCOL.md §11.1): string: valid UTF-8;
// integer: decimal text, an optional '-' then digits, within int64; boolean: "true" or
// "false". A request whose arguments do not fit is answered error_code::bad_arguments
// with a message naming the parameter; an unknown method, no_such_method.
//
// Stream methods (add_stream): the handler also gets the call's bokbok::stream
// (PROTOCOL.md §12). A plain request to a stream method, and a stream call to a plain
// method, are answered bad_arguments saying how to call it; bokbok.describe marks a
// stream method with one more pair after its parameters: "" and "stream:out",
// "stream:in" or "stream:both".
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "bokbok needs C++20: compile with -std=c++20 (or later); g++ 12 defaults to C++17"
#endif

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bokbok/connection.hpp"
#include "bokbok/export.hpp"
#include "bokbok/message.hpp"
#include "bokbok/stream.hpp"

namespace bokbok {

enum class param_type : std::uint8_t { bytes, string, integer, boolean };

// Its name on the wire and in messages: "bytes", "string", "integer", "boolean".
BOKBOK_API const char* to_string(param_type type) noexcept;

// One parameter. `list`: zero or more arguments of `type`; only the last parameter may
// be a list.
struct param {
  std::string name;
  param_type type = param_type::bytes;
  bool list = false;
};

// The checked arguments of one call (the request's fields after the method name), as
// the handler receives them. Index i is the i-th argument field: a list parameter's
// elements follow each other from its index on. Asking an argument as a type it was not
// declared with (integer() of a string parameter), or an index >= size(), throws
// bokbok::usage_error (a bug in the handler; the caller gets handler_failed).
class BOKBOK_API args {
 public:
  std::size_t size() const noexcept { return fields_.size(); }
  const std::string& bytes(std::size_t i) const;  // any argument: its field as sent
  const std::string& text(std::size_t i) const;   // a string argument (valid UTF-8)
  std::int64_t integer(std::size_t i) const;      // an integer argument
  bool boolean(std::size_t i) const;              // a boolean argument
  // The argument fields themselves, to move from (a large bytes argument).
  message& fields() noexcept { return fields_; }

 private:
  friend class router;
  const param& declared(std::size_t i, param_type wanted) const;
  message fields_;
  std::vector<std::int64_t> values_;    // per argument: integer, or 0/1 for a boolean
  std::vector<const param*> params_;    // per argument: the parameter it fills
};

// Runs one method: returns the response, or throws like a request_handler (a
// remote_error keeps its code: throw error_code::bad_arguments for a value out of range).
using method_handler = std::function<message(connection&, args&)>;

// Which ends of a stream method's call stream: out, the responder (the handler writes);
// in, the requester (the handler reads); both.
enum class stream_kind : std::uint8_t { out, in, both };

// Its name in bokbok.describe's marker (after "stream:"): "out", "in", "both".
BOKBOK_API const char* to_string(stream_kind kind) noexcept;

// Runs one stream method: reads and writes `call` (this_call::stream()) and returns the
// final response, or throws like a method_handler. Runs on a handler slot for the
// whole call, like any handler.
using stream_method_handler = std::function<message(connection&, args&, stream& call)>;

// Describes one registered method.
struct method_info {
  std::string name;
  std::string description;
  std::vector<param> params;
  std::optional<stream_kind> stream;  // set for a stream method (add_stream)
};

// Registration happens before use: add() is not thread-safe, and handler() takes a
// snapshot (methods added later are not seen by handlers taken earlier). The handler it
// returns is copyable and may run on any number of threads at once.
class BOKBOK_API router {
 public:
  router();
  ~router();
  router(router&&) noexcept;
  router& operator=(router&&) noexcept;

  // Registers `name` (non-empty, not starting with "bokbok.", not already registered;
  // else usage_error). `description` is one line. Only the last of `params` may be a
  // list. Returns *this, for chaining.
  router& add(std::string name, std::string description, std::vector<param> params,
              method_handler run);

  // Registers a stream method, under the same rules as add(). Its opening message is
  // checked against `params` like a plain request; `kind` is what describe shows (the
  // router does not police which ends actually stream).
  router& add_stream(std::string name, std::string description, std::vector<param> params,
                     stream_kind kind, stream_method_handler run);

  // The registered methods, in registration order.
  std::vector<method_info> methods() const;

  // The request handler for options::on_request / server_options::on_request.
  request_handler handler() const;

 private:
  struct entry;
  std::vector<std::shared_ptr<const entry>> entries_;
};

}  // namespace bokbok
