// A program that uses bokbok the way another project does: only the public header, built
// by tests/build/consumer_builds.py against a subproject or an installed prefix. It opens
// a connection pair in-process, makes one call each way and prints "consumer: ok".
#include <bokbok/bokbok.hpp>

#include <cstdio>

int main() {
  bokbok::options echo;
  echo.on_request = [](bokbok::connection&, bokbok::message m) { return m; };
  auto [a, b] = bokbok::connect_socketpair(echo, echo);
  bokbok::message there = a.request({"ping", "from a"});
  bokbok::message back = b.request({"ping", "from b"});
  a.close();
  a.wait_closed();
  if (there != bokbok::message{"ping", "from a"} || back != bokbok::message{"ping", "from b"}) {
    std::fprintf(stderr, "consumer: wrong answers\n");
    return 1;
  }
  std::puts("consumer: ok");
  return 0;
}
