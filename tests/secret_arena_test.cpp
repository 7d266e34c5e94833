// The locked arena for small secrets (src/crypto/secret_arena.hpp): slots reused and
// zeroed, its bound, few mappings for many secrets, not dumped, locked or (when the
// kernel refuses) unlocked but still wiped, and the process arena saying so once.
#include <doctest/doctest.h>

#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "bokbok/key.hpp"
#include "crypto/secret.hpp"
#include "crypto/secret_arena.hpp"

// The sanitizers' runtimes replace mlock() with a no-op that reports success (their
// shadow memory could never be locked): under them nothing is locked and nothing is
// refused, so what is checked of locking is left to ordinary builds.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool mlock_is_real = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool mlock_is_real = false;
#else
constexpr bool mlock_is_real = true;
#endif
#else
constexpr bool mlock_is_real = true;
#endif

using namespace bokbok::crypto;

namespace {

const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
constexpr std::size_t slot = secret_arena::slot_size;

std::size_t mapping_count() {
  std::ifstream maps("/proc/self/maps");
  std::size_t n = 0;
  for (std::string line; std::getline(maps, line);) ++n;
  return n;
}

// The VmFlags line of the mapping in /proc/self/smaps that holds `p` ("" if none).
std::string vm_flags_of(const void* p) {
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  std::ifstream smaps("/proc/self/smaps");
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    std::uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-' && line.find(' ') != std::string::npos &&
        line.find(':') > line.find(' ')) {
      inside = lo <= at && at < hi;
      continue;
    }
    if (inside && line.starts_with("VmFlags:")) return line;
  }
  return "";
}

// Reads a released slot too, which AddressSanitizer builds poison (secret_arena.cpp).
__attribute__((no_sanitize("address"))) bool all_zero(const unsigned char* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

}  // namespace

TEST_CASE("a released slot is zeroed and is the next one handed out") {
  secret_arena arena({});
  unsigned char* a = arena.allocate();
  unsigned char* b = arena.allocate();
  CHECK(a != b);
  CHECK(all_zero(a, slot));
  for (std::size_t i = 0; i < slot; ++i) a[i] = 0xa5;
  arena.release(a);
  // Still mapped (chunks stay): what the secret held is gone.
  CHECK(all_zero(a, slot));
  CHECK(arena.usage().slots_in_use == 1);
  unsigned char* c = arena.allocate();
  CHECK(c == a);
  CHECK(all_zero(c, slot));
  arena.release(b);
  arena.release(c);
  CHECK(arena.usage().slots_in_use == 0);
}

TEST_CASE("chunks double up to the largest size and the arena refuses past its bound") {
  secret_arena arena({.first_chunk = page, .largest_chunk = 2 * page, .max_bytes = 5 * page});
  std::vector<unsigned char*> held;
  // page + 2 pages + 2 pages: three chunks, then nothing more.
  for (std::size_t i = 0; i < 5 * page / slot; ++i) held.push_back(arena.allocate());
  auto u = arena.usage();
  CHECK(u.chunks == 3);
  CHECK(u.bytes == 5 * page);
  CHECK(u.slots_in_use == 5 * page / slot);
  CHECK(u.slots_free == 0);
  CHECK_THROWS_AS(arena.allocate(), std::bad_alloc);
  // A slot given back can be taken again; the bound is on memory, not on calls.
  arena.release(held.back());
  held.back() = arena.allocate();
  CHECK_THROWS_AS(arena.allocate(), std::bad_alloc);
  for (auto* p : held) arena.release(p);
  CHECK(arena.usage().slots_free == 5 * page / slot);
}

TEST_CASE("a bound that leaves less than a page gives a last chunk cut to what is left") {
  secret_arena arena({.first_chunk = 4 * page, .largest_chunk = 4 * page, .max_bytes = 6 * page});
  std::vector<unsigned char*> held;
  for (std::size_t i = 0; i < 6 * page / slot; ++i) held.push_back(arena.allocate());
  CHECK(arena.usage().chunks == 2);
  CHECK(arena.usage().bytes == 6 * page);
  CHECK_THROWS_AS(arena.allocate(), std::bad_alloc);
  for (auto* p : held) arena.release(p);
}

TEST_CASE("twenty thousand keys take a handful of mappings, not one each") {
  // Through the public types that key mode uses for every connection.
  const std::size_t before = mapping_count();
  std::vector<key> keys;
  std::vector<bokbok::key> public_keys;
  for (int i = 0; i < 10000; ++i) keys.push_back(key::random());
  for (int i = 0; i < 10000; ++i) public_keys.push_back(bokbok::key::generate());
  const std::size_t after = mapping_count();
  MESSAGE("mappings: " << before << " before, " << after << " with 20,000 keys");
  // sodium_malloc gave each at least one mapping of its own (guard pages around it).
  CHECK(after - before < 100);
  // Each key is distinct memory holding its own bytes.
  CHECK_FALSE(keys[0].equals(keys[1]));
}

TEST_CASE("arena memory is left out of core dumps and locked") {
  secret_arena arena({});
  unsigned char* p = arena.allocate();
  const std::string flags = vm_flags_of(p);
  CAPTURE(flags);
  REQUIRE(!flags.empty());
  CHECK(flags.find(" dd") != std::string::npos);  // MADV_DONTDUMP
  if (mlock_is_real && arena.usage().unlocked_bytes == 0)
    CHECK(flags.find(" lo") != std::string::npos);
  // The guard pages on either side are not accessible.
  CHECK(vm_flags_of(p - page).find(" rd") == std::string::npos);
  arena.release(p);
}

TEST_CASE("when locking is refused the arena still works, unlocked, not dumped, wiped"
          * doctest::skip(!mlock_is_real)) {
  // In a child: without CAP_IPC_LOCK and with RLIMIT_MEMLOCK 0, mlock() must fail.
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (::syscall(SYS_capget, &hdr, data) != 0) ::_exit(10);
    data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    if (::syscall(SYS_capset, &hdr, data) != 0) ::_exit(11);
    rlimit none{0, 0};
    if (::setrlimit(RLIMIT_MEMLOCK, &none) != 0) ::_exit(12);
    secret_arena arena({});
    unsigned char* p = arena.allocate();
    if (arena.usage().unlocked_bytes != arena.usage().bytes) ::_exit(13);
    for (std::size_t i = 0; i < slot; ++i) p[i] = 0x5a;
    const std::string flags = vm_flags_of(p);
    if (flags.find(" dd") == std::string::npos) ::_exit(14);
    if (flags.find(" lo") != std::string::npos) ::_exit(15);
    arena.release(p);
    if (!all_zero(p, slot)) ::_exit(16);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("the process arena says once on stderr that it could not lock its memory"
          * doctest::skip(!mlock_is_real)) {
  int out[2];
  REQUIRE(::pipe(out) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(out[1], 2);
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (::syscall(SYS_capget, &hdr, data) != 0) ::_exit(10);
    data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    if (::syscall(SYS_capset, &hdr, data) != 0) ::_exit(11);
    rlimit none{0, 0};
    if (::setrlimit(RLIMIT_MEMLOCK, &none) != 0) ::_exit(12);
    // Keys until the arena has made three more chunks, none of them locked.
    auto& arena = secret_arena::process();
    const std::size_t chunks = arena.usage().chunks;
    std::vector<key> keys;
    while (arena.usage().chunks < chunks + 3 && keys.size() < 1'000'000) keys.push_back(key::random());
    if (arena.usage().unlocked_bytes == 0) ::_exit(13);
    ::_exit(0);
  }
  ::close(out[1]);
  std::string said;
  char buf[4096];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) said.append(buf, std::size_t(n));
  ::close(out[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CAPTURE(said);
  const std::string line = "bokbok: cannot lock memory for secrets";
  const auto first = said.find(line);
  CHECK(first != std::string::npos);
  CHECK(said.find(line, first + 1) == std::string::npos);  // once, for three chunks
  CHECK(said.find("still zeroed when freed and left out of core dumps") != std::string::npos);
}

TEST_CASE("secrets of up to a slot come from the process arena, larger ones do not") {
  const auto before = secret_arena::process().usage().slots_in_use;
  {
    secret_bytes small(secret_arena::slot_size);
    key k = key::random();
    auto public_key = bokbok::key::generate();
    CHECK(secret_arena::process().usage().slots_in_use == before + 3);
    secret_bytes large(secret_arena::slot_size + 1);
    CHECK(secret_arena::process().usage().slots_in_use == before + 3);
  }
  CHECK(secret_arena::process().usage().slots_in_use == before);
}
