#include "crypto/secret_arena.hpp"

#include <sodium.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

// Under AddressSanitizer a released slot is poisoned until it is handed out again, so a
// use after free of a secret is still caught (sodium_free() unmapped it).
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BOKBOK_ARENA_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define BOKBOK_ARENA_ASAN 1
#endif
#ifdef BOKBOK_ARENA_ASAN
#include <sanitizer/asan_interface.h>
#define BOKBOK_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define BOKBOK_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define BOKBOK_POISON(p, n) ((void)(p), (void)(n))
#define BOKBOK_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace bokbok::crypto {

namespace {

std::size_t page_size() {
  static const std::size_t size = [] {
    long p = ::sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<std::size_t>(p) : std::size_t{4096};
  }();
  return size;
}

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

}  // namespace

secret_arena::secret_arena(limits l) : limits_(l) {}

secret_arena::~secret_arena() {
  for (const chunk& c : chunks_) {
    BOKBOK_UNPOISON(c.slots, c.bytes);
    sodium_memzero(c.slots, c.bytes);
    if (c.locked) ::munlock(c.slots, c.bytes);
    ::munmap(c.base, c.mapped);
  }
}

secret_arena& secret_arena::process() {
  static secret_arena* const arena = [] {
    auto* a = new secret_arena(limits{});
    a->report_unlocked_ = true;
    return a;
  }();
  return *arena;
}

// `mu_` held. Maps the next chunk, twice the last one's size (up to largest_chunk), cut
// to what max_bytes leaves; on any failure nothing changes and std::bad_alloc is thrown.
void secret_arena::add_chunk_locked() {
  const std::size_t page = page_size();
  std::size_t want = chunks_.empty() ? limits_.first_chunk
                                     : std::min(2 * chunks_.back().bytes, limits_.largest_chunk);
  want = round_up(std::max<std::size_t>(want, slot_size), page);
  const std::size_t room = limits_.max_bytes > bytes_ ? (limits_.max_bytes - bytes_) / page * page : 0;
  const std::size_t size = std::min(want, room);
  if (size == 0) throw std::bad_alloc();
  chunk c;
  c.mapped = size + 2 * page;
  void* m = ::mmap(nullptr, c.mapped, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) throw std::bad_alloc();
  c.base = static_cast<unsigned char*>(m);
  c.slots = c.base + page;
  c.bytes = size;
  try {
    if (::mprotect(c.slots, c.bytes, PROT_READ | PROT_WRITE) != 0) throw std::bad_alloc();
    free_.reserve((bytes_ + size) / slot_size);  // release() then never allocates
    chunks_.reserve(chunks_.size() + 1);
  } catch (...) {
    ::munmap(c.base, c.mapped);
    throw;
  }
#ifdef MADV_DONTDUMP
  ::madvise(c.slots, c.bytes, MADV_DONTDUMP);  // best effort, like libsodium
#endif
  c.locked = ::mlock(c.slots, c.bytes) == 0;
  if (!c.locked) {
    const int err = errno;
    if (report_unlocked_ && unlocked_bytes_ == 0)
      std::fprintf(stderr,
                   "bokbok: cannot lock memory for secrets (mlock: %s; raise RLIMIT_MEMLOCK, "
                   "`ulimit -l`): keys are now also kept in unlocked memory, which may be "
                   "swapped out; they are still zeroed when freed and left out of core dumps\n",
                   std::strerror(err));
    unlocked_bytes_ += c.bytes;
  }
  chunks_.push_back(c);
  bytes_ += c.bytes;
  carved_ = 0;
}

unsigned char* secret_arena::allocate() {
  std::lock_guard lock(mu_);
  if (!free_.empty()) {
    unsigned char* p = free_.back();
    free_.pop_back();
    ++in_use_;
    BOKBOK_UNPOISON(p, slot_size);
    return p;  // zeroed by release()
  }
  if (chunks_.empty() || carved_ == chunks_.back().bytes / slot_size) add_chunk_locked();
  unsigned char* p = chunks_.back().slots + carved_ * slot_size;
  ++carved_;
  ++in_use_;
  return p;  // fresh anonymous memory: zero
}

const secret_arena::chunk* secret_arena::chunk_of_locked(const unsigned char* p) const noexcept {
  for (const chunk& c : chunks_) {
    if (p < c.slots || p >= c.slots + c.bytes) continue;
    if ((p - c.slots) % slot_size != 0) return nullptr;
    if (&c == &chunks_.back() && p >= c.slots + carved_ * slot_size) return nullptr;
    return &c;
  }
  return nullptr;
}

void secret_arena::release(unsigned char* slot) noexcept {
  std::lock_guard lock(mu_);
  if (chunk_of_locked(slot) == nullptr || in_use_ == 0) {
    std::fprintf(stderr, "bokbok: secret_arena::release of memory that is not a slot in use\n");
    std::abort();
  }
  sodium_memzero(slot, slot_size);
  BOKBOK_POISON(slot, slot_size);
  free_.push_back(slot);  // capacity reserved in add_chunk_locked(): cannot throw
  --in_use_;
}

secret_arena::usage_figures secret_arena::usage() const {
  std::lock_guard lock(mu_);
  usage_figures u;
  u.chunks = chunks_.size();
  u.bytes = bytes_;
  u.unlocked_bytes = unlocked_bytes_;
  u.slots_in_use = in_use_;
  u.slots_free = free_.size();
  if (!chunks_.empty()) u.slots_free += chunks_.back().bytes / slot_size - carved_;
  return u;
}

void secret_arena::set_max_bytes_for_test(std::size_t max_bytes) {
  std::lock_guard lock(mu_);
  limits_.max_bytes = max_bytes;
}

}  // namespace bokbok::crypto
