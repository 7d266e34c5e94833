// bokbok::router (include/bokbok/router.hpp) over a real connection pair: dispatch,
// arity and type errors with their messages, unknown methods, typed round trips, and
// the introspection methods of PROTOCOL.md §11 against the registrations.
#include <doctest/doctest.h>

#include <string>

#include "bokbok/bokbok.hpp"
#include "bokbok/router.hpp"

using bokbok::message;
using bokbok::param_type;

namespace {

bokbok::router sample_router() {
  bokbok::router r;
  r.add("add", "adds two integers", {{"a", param_type::integer}, {"b", param_type::integer}},
        [](bokbok::connection&, bokbok::args& a) -> message {
          return {std::to_string(a.integer(0) + a.integer(1))};
        });
  r.add("greet", "greets someone, loudly or not",
        {{"name", param_type::string}, {"loud", param_type::boolean}},
        [](bokbok::connection&, bokbok::args& a) -> message {
          std::string out = "hello " + a.text(0);
          return {a.boolean(1) ? out + "!" : out};
        });
  r.add("concat", "joins its fields", {{"sep", param_type::bytes}, {"parts", param_type::bytes, true}},
        [](bokbok::connection&, bokbok::args& a) -> message {
          std::string out;
          for (std::size_t i = 1; i < a.size(); ++i) out += (i > 1 ? a.bytes(0) : "") + a.bytes(i);
          return {out, std::to_string(a.size())};
        });
  r.add("sum", "adds integers", {{"n", param_type::integer, true}},
        [](bokbok::connection&, bokbok::args& a) -> message {
          std::int64_t s = 0;
          for (std::size_t i = 0; i < a.size(); ++i) s += a.integer(i);
          return {std::to_string(s)};
        });
  r.add("misuse", "asks an argument as the wrong type", {{"x", param_type::string}},
        [](bokbok::connection&, bokbok::args& a) -> message {
          return {std::to_string(a.integer(0))};
        });
  return r;
}

struct pair_with_router {
  bokbok::connection client, server;
  explicit pair_with_router(const bokbok::router& r) : pair_with_router(make(r)) {}
  ~pair_with_router() {
    client.close();
    server.wait_closed();
  }

 private:
  explicit pair_with_router(std::pair<bokbok::connection, bokbok::connection> p)
      : client(std::move(p.first)), server(std::move(p.second)) {}
  static std::pair<bokbok::connection, bokbok::connection> make(const bokbok::router& r) {
    bokbok::options served;
    served.on_request = r.handler();
    return bokbok::connect_socketpair({}, served);
  }
};

// The error a request gets: its code's name and its message.
std::pair<std::string, std::string> failure_of(bokbok::connection& c, const message& m) {
  try {
    c.request(m);
  } catch (const bokbok::remote_error& e) {
    return {bokbok::to_string(e.code()), e.message()};
  }
  return {"answered", ""};
}

}  // namespace

TEST_CASE("the router dispatches by name and hands every parameter type over typed") {
  auto r = sample_router();
  pair_with_router p(r);
  CHECK(p.client.request({"add", "2", "3"}) == message{"5"});
  CHECK(p.client.request({"add", "-9223372036854775807", "-1"}) ==
        message{"-9223372036854775808"});
  CHECK(p.client.request({"greet", "wörld", "true"}) == message{"hello wörld!"});
  CHECK(p.client.request({"greet", "you", "false"}) == message{"hello you"});
  CHECK(p.client.request({"concat", "-", std::string("a\0", 2), "\xff"}) ==
        message{std::string("a\0-\xff", 4), "3"});
  CHECK(p.client.request({"concat", "-"}) == message{"", "1"});
  CHECK(p.client.request({"sum"}) == message{"0"});
  CHECK(p.client.request({"sum", "1", "2", "39"}) == message{"42"});
}

TEST_CASE("wrong arity and malformed values are bad_arguments naming the parameter") {
  auto r = sample_router();
  pair_with_router p(r);
  CHECK(failure_of(p.client, {"add", "2"}) ==
        std::pair<std::string, std::string>{
            "bad_arguments", "add takes 2 arguments (a: integer, b: integer), got 1"});
  CHECK(failure_of(p.client, {"add", "1", "2", "3"}).second ==
        "add takes 2 arguments (a: integer, b: integer), got 3");
  CHECK(failure_of(p.client, {"concat"}) ==
        std::pair<std::string, std::string>{
            "bad_arguments",
            "concat takes at least 1 arguments (sep: bytes, parts: list<bytes>), got 0"});
  CHECK(failure_of(p.client, {"add", "2", "x3"}) ==
        std::pair<std::string, std::string>{
            "bad_arguments",
            "add: argument 2 (b) must be an integer (decimal, within 64-bit signed), got 'x3'"});
  CHECK(failure_of(p.client, {"add", "9223372036854775808", "0"}).second ==
        "add: argument 1 (a) must be an integer (decimal, within 64-bit signed), got "
        "'9223372036854775808'");
  CHECK(failure_of(p.client, {"add", "+1", "0"}).first == "bad_arguments");
  CHECK(failure_of(p.client, {"add", "", "0"}).first == "bad_arguments");
  CHECK(failure_of(p.client, {"add", "-", "0"}).first == "bad_arguments");
  CHECK(failure_of(p.client, {"greet", "x", "yes"}).second ==
        "greet: argument 2 (loud) must be a boolean (true or false), got 'yes'");
  CHECK(failure_of(p.client, {"greet", "\xc0\xaf", "true"}).second ==
        "greet: argument 1 (name) must be a string (valid UTF-8), got '\\xc0\\xaf'");
  CHECK(failure_of(p.client, {"greet", "\xed\xa0\x80", "true"}).first == "bad_arguments");
  CHECK(failure_of(p.client, {"greet", "\xe2\x82", "true"}).first == "bad_arguments");
  CHECK(failure_of(p.client, {"sum", "1", "two"}).second ==
        "sum: argument 2 (n) must be an integer (decimal, within 64-bit signed), got 'two'");
  // A handler asking for the wrong type is its own bug: handler_failed, not bad_arguments.
  CHECK(failure_of(p.client, {"misuse", "x"}).first == "handler_failed");
}

TEST_CASE("unknown and empty requests are no_such_method") {
  auto r = sample_router();
  pair_with_router p(r);
  CHECK(failure_of(p.client, {"subtract", "1", "2"}) ==
        std::pair<std::string, std::string>{"no_such_method", "unknown method: 'subtract'"});
  CHECK(failure_of(p.client, {}).first == "no_such_method");
  CHECK(failure_of(p.client, {"bokbok.nothing"}).first == "no_such_method");
}

TEST_CASE("bokbok.list and bokbok.describe answer what was registered") {
  auto r = sample_router();
  pair_with_router p(r);
  message expected_list;
  for (const auto& m : r.methods()) expected_list.insert(expected_list.end(), {m.name, m.description});
  expected_list.insert(expected_list.end(),
                       {"bokbok.list", "the methods: name and description of each",
                        "bokbok.describe",
                        "a method's description, parameters, the protocol version and features"});
  CHECK(expected_list.size() == 14);
  CHECK(p.client.request({"bokbok.list"}) == expected_list);
  CHECK(p.client.request({"bokbok.describe", "greet"}) ==
        message{"greet", "greets someone, loudly or not", "1", "deadline notify", "name",
                "string", "loud", "boolean"});
  CHECK(p.client.request({"bokbok.describe", "concat"}) ==
        message{"concat", "joins its fields", "1", "deadline notify", "sep", "bytes", "parts",
                "list<bytes>"});
  CHECK(p.client.request({"bokbok.describe", "bokbok.describe"}) ==
        message{"bokbok.describe",
                "a method's description, parameters, the protocol version and features", "1",
                "deadline notify", "method", "string"});
  CHECK(failure_of(p.client, {"bokbok.describe", "nope"}) ==
        std::pair<std::string, std::string>{"no_such_method", "unknown method: 'nope'"});
  CHECK(failure_of(p.client, {"bokbok.describe"}).first == "bad_arguments");
  CHECK(failure_of(p.client, {"bokbok.list", "x"}).first == "bad_arguments");
}

TEST_CASE("a server without a router answers bokbok.list with no_such_method as before") {
  bokbok::options served;
  served.on_request = [](bokbok::connection&, message m) -> message {
    if (!m.empty() && m[0] == "ping") return {"pong"};
    throw bokbok::remote_error(bokbok::error_code::no_such_method, "unknown");
  };
  auto [client, server] = bokbok::connect_socketpair({}, served);
  CHECK(failure_of(client, {"bokbok.list"}).first == "no_such_method");
  client.close();
  server.wait_closed();
}

TEST_CASE("registration refuses reserved, duplicate and malformed methods") {
  bokbok::router r;
  auto run = [](bokbok::connection&, bokbok::args&) { return message{}; };
  CHECK_THROWS_AS(r.add("bokbok.mine", "", {}, run), bokbok::usage_error);
  CHECK_THROWS_AS(r.add("", "", {}, run), bokbok::usage_error);
  r.add("x", "", {}, run);
  CHECK_THROWS_AS(r.add("x", "", {}, run), bokbok::usage_error);
  CHECK_THROWS_AS(r.add("y", "", {{"l", param_type::bytes, true}, {"z", param_type::bytes}}, run),
                  bokbok::usage_error);
  CHECK(r.methods().size() == 1);
  CHECK(std::string(bokbok::to_string(bokbok::error_code::bad_arguments)) == "bad_arguments");
  CHECK(static_cast<int>(bokbok::error_code::bad_arguments) == 10);
}
