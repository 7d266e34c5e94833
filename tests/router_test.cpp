// bokbok::router (include/bokbok/router.hpp) over a real connection pair: dispatch,
// arity and type errors with their messages, unknown methods, typed round trips, and
// the introspection methods of PROTOCOL.md §11 against the registrations.
#include <doctest/doctest.h>

#include <cctype>
#include <optional>
#include <string>
#include <vector>

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
        message{"greet", "greets someone, loudly or not", "1", "deadline notify stream", "name",
                "string", "loud", "boolean"});
  CHECK(p.client.request({"bokbok.describe", "concat"}) ==
        message{"concat", "joins its fields", "1", "deadline notify stream", "sep", "bytes", "parts",
                "list<bytes>"});
  CHECK(p.client.request({"bokbok.describe", "bokbok.describe"}) ==
        message{"bokbok.describe",
                "a method's description, parameters, the protocol version and features", "1",
                "deadline notify stream", "method", "string"});
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

namespace {

// A router with one stream method of each kind and one plain method.
bokbok::router streaming_router() {
  bokbok::router r;
  r.add_stream("count", "streams 1..N", {{"n", param_type::integer}}, bokbok::stream_kind::out,
               [](bokbok::connection&, bokbok::args& a, bokbok::stream& s) -> message {
                 for (std::int64_t i = 1; i <= a.integer(0); ++i) s.write({std::to_string(i)});
                 return {"counted", std::to_string(a.integer(0))};
               });
  r.add_stream("sum", "adds what it reads", {}, bokbok::stream_kind::in,
               [](bokbok::connection&, bokbok::args&, bokbok::stream& s) -> message {
                 std::int64_t total = 0;
                 while (auto m = s.read()) total += std::stoll(m->at(0));
                 return {std::to_string(total)};
               });
  r.add_stream("upper", "streams back what it reads, in capitals", {{"tag", param_type::string}},
               bokbok::stream_kind::both,
               [](bokbok::connection&, bokbok::args& a, bokbok::stream& s) -> message {
                 while (auto m = s.read()) {
                   for (auto& c : m->at(0)) c = char(std::toupper(static_cast<unsigned char>(c)));
                   s.write({a.text(0), m->at(0)});
                 }
                 return {};
               });
  r.add("ping", "answers pong", {}, [](bokbok::connection&, bokbok::args&) -> message {
    return {"pong"};
  });
  return r;
}

// The error a stream call gets: its code's name and its message.
std::pair<std::string, std::string> stream_failure_of(bokbok::connection& c, const message& m) {
  try {
    c.open_stream(m).finish();
  } catch (const bokbok::remote_error& e) {
    return {bokbok::to_string(e.code()), e.message()};
  }
  return {"answered", ""};
}

}  // namespace

TEST_CASE("stream methods run with the call's stream, their opening message checked") {
  auto r = streaming_router();
  pair_with_router p(r);
  auto counting = p.client.open_stream({"count", "3"});
  std::vector<message> got;
  while (auto m = counting.read()) got.push_back(*m);
  CHECK(got == std::vector<message>{{"1"}, {"2"}, {"3"}});
  CHECK(counting.finish() == message{"counted", "3"});

  auto summing = p.client.open_stream({"sum"});
  for (int i = 1; i <= 10; ++i) summing.write({std::to_string(i)});
  CHECK(summing.finish() == message{"55"});

  auto upper = p.client.open_stream({"upper", "t"});
  upper.write({"abc"});
  CHECK(upper.read() == message{"t", "ABC"});
  upper.close_write();
  CHECK(upper.read() == std::nullopt);
  CHECK(upper.finish() == message{});

  CHECK(stream_failure_of(p.client, {"count", "x"}) ==
        std::pair<std::string, std::string>{
            "bad_arguments",
            "count: argument 1 (n) must be an integer (decimal, within 64-bit signed), got 'x'"});
}

TEST_CASE("a plain request to a stream method, and a stream call to a plain one, say how to call it") {
  auto r = streaming_router();
  pair_with_router p(r);
  CHECK(failure_of(p.client, {"count", "3"}) ==
        std::pair<std::string, std::string>{
            "bad_arguments", "count is a stream method: open it as a stream (bokbok call --stream)"});
  CHECK(stream_failure_of(p.client, {"ping"}) ==
        std::pair<std::string, std::string>{
            "bad_arguments",
            "ping is not a stream method: call it with a plain request (bokbok call without "
            "--stream)"});
  CHECK(stream_failure_of(p.client, {"bokbok.list"}).first == "bad_arguments");
  CHECK(stream_failure_of(p.client, {"nope"}).first == "no_such_method");
  CHECK(p.client.request({"ping"}) == message{"pong"});  // the connection carries on
}

TEST_CASE("bokbok.describe marks a stream method with a last pair \"\", stream:KIND; list is unchanged") {
  auto r = streaming_router();
  pair_with_router p(r);
  auto described = [&](const std::string& name) {
    message m = p.client.request({"bokbok.describe", name});
    REQUIRE(m.size() >= 4);
    m.erase(m.begin() + 2, m.begin() + 4);  // protocol version and features: tested above
    return m;
  };
  CHECK(described("count") == message{"count", "streams 1..N", "n", "integer", "", "stream:out"});
  CHECK(described("sum") == message{"sum", "adds what it reads", "", "stream:in"});
  CHECK(described("upper") == message{"upper", "streams back what it reads, in capitals", "tag",
                                      "string", "", "stream:both"});
  CHECK(described("ping") == message{"ping", "answers pong"});
  CHECK(p.client.request({"bokbok.list"}) ==
        message{"count", "streams 1..N", "sum", "adds what it reads", "upper",
                "streams back what it reads, in capitals", "ping", "answers pong", "bokbok.list",
                "the methods: name and description of each", "bokbok.describe",
                "a method's description, parameters, the protocol version and features"});
  auto infos = r.methods();
  REQUIRE(infos.size() == 4);
  CHECK(infos[0].stream == bokbok::stream_kind::out);
  CHECK(infos[1].stream == bokbok::stream_kind::in);
  CHECK(infos[2].stream == bokbok::stream_kind::both);
  CHECK_FALSE(infos[3].stream.has_value());
  CHECK(std::string(bokbok::to_string(bokbok::stream_kind::both)) == "both");
}

TEST_CASE("add_stream refuses what add refuses, and names already taken by either") {
  bokbok::router r;
  auto run = [](bokbok::connection&, bokbok::args&, bokbok::stream&) { return message{}; };
  r.add("x", "", {}, [](bokbok::connection&, bokbok::args&) { return message{}; });
  CHECK_THROWS_AS(r.add_stream("x", "", {}, bokbok::stream_kind::out, run), bokbok::usage_error);
  CHECK_THROWS_AS(r.add_stream("bokbok.s", "", {}, bokbok::stream_kind::out, run),
                  bokbok::usage_error);
  CHECK_THROWS_AS(r.add_stream("s", "", {}, bokbok::stream_kind::out, nullptr),
                  bokbok::usage_error);
  r.add_stream("s", "", {}, bokbok::stream_kind::in, run);
  CHECK_THROWS_AS(r.add("s", "", {}, [](bokbok::connection&, bokbok::args&) { return message{}; }),
                  bokbok::usage_error);
  CHECK(r.methods().size() == 2);
}
