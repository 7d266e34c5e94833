// secret_arena: locked memory for small secrets (keys, chaining keys, ephemeral private
// keys), carved out of a few large mappings instead of one guarded mapping per secret.
//
// Why: sodium_malloc() gives each secret its own mapping with guard pages, which costs
// the process about four memory mappings (VMAs) per secret. A key-mode connection holds
// several secrets, so a few thousand connections exhausted vm.max_map_count (65,530) and
// the next mmap or thread creation failed. Here every secret of at most `slot_size`
// bytes takes one fixed-size slot of a chunk; a chunk is one mapping:
//
//   [ guard page, PROT_NONE ][ slots: read/write, mlock()ed, MADV_DONTDUMP ][ guard page ]
//
// which is three VMAs however many slots it holds. The first chunk is `first_chunk`
// bytes; each next one is twice the last, up to `largest_chunk`. All chunks together hold
// at most `max_bytes`: past that, allocate() throws std::bad_alloc (as it does when the
// kernel refuses a mapping). So an arena uses at most 3 x (number of chunks) mappings;
// with the defaults (16 KiB doubling to 1 MiB, 64 MiB in all) that is at most 70 chunks
// and 210 mappings for 2,097,152 slots.
//
// Slots are handed out zeroed and zeroed again (sodium_memzero) when released; a released
// slot is the next one handed out (last in, first out). Chunks are never unmapped while
// the arena lives (the process arena lives as long as the process): its size is the peak
// number of secrets alive at once, a high-water mark, and its unused slots hold zeros.
//
// Locking: each chunk is mlock()ed so that secrets are not swapped out. When the kernel
// refuses (RLIMIT_MEMLOCK reached, `ulimit -l`), the chunk stays unlocked: secrets in it
// can reach swap, but they are still zeroed on release and left out of core dumps. The
// process arena then writes one line on stderr, once per process, saying so; usage()
// tells how much is unlocked.
//
// Unlike sodium_malloc there is no guard page or canary between two secrets of the same
// chunk: an overflow of one slot reaches its neighbour. Secrets are fixed-size keys
// written by code in src/crypto only, never buffers that a peer's input sizes.
//
// Thread-safety: allocate(), release() and usage() may be called from any thread (one
// mutex per arena).
#pragma once

#include <cstddef>
#include <mutex>
#include <vector>

namespace bokbok::crypto {

class secret_arena {
 public:
  static constexpr std::size_t slot_size = 32;  // a key, a hash, a X25519 private key

  struct limits {
    std::size_t first_chunk = 16 * 1024;          // bytes of slots in the first chunk
    std::size_t largest_chunk = 1024 * 1024;      // chunks double up to this
    std::size_t max_bytes = 64 * 1024 * 1024;     // all chunks together
  };

  struct usage_figures {
    std::size_t chunks = 0;          // mappings made (three VMAs each at most)
    std::size_t bytes = 0;           // bytes of slots in all chunks
    std::size_t unlocked_bytes = 0;  // of which mlock() was refused
    std::size_t slots_in_use = 0;
    std::size_t slots_free = 0;      // released or never used, in chunks already made
  };

  explicit secret_arena(limits l);
  // Wipes and unmaps every chunk. No slot may still be in use.
  ~secret_arena();
  secret_arena(const secret_arena&) = delete;
  secret_arena& operator=(const secret_arena&) = delete;

  // The arena that secret_bytes and bokbok::key use: made on first use with the default
  // limits, never destroyed (secrets in static objects may outlive main()).
  static secret_arena& process();

  // One zeroed slot of `slot_size` bytes. Throws std::bad_alloc when a new chunk is
  // needed and `max_bytes` is reached or the kernel refuses the mapping.
  unsigned char* allocate();

  // Zeroes the slot and makes it the next one allocate() returns. `slot` must come from
  // this arena's allocate() and not be released yet: anything else aborts the process
  // (like libsodium on a damaged guarded allocation), since it is memory corruption.
  void release(unsigned char* slot) noexcept;

  usage_figures usage() const;

  // Test hook: lowers (or raises) `max_bytes`; chunks already made stay.
  void set_max_bytes_for_test(std::size_t max_bytes);

 private:
  struct chunk {
    unsigned char* base = nullptr;  // the mapping, guard pages included
    std::size_t mapped = 0;         // its length
    unsigned char* slots = nullptr; // first slot, after the leading guard page
    std::size_t bytes = 0;          // bytes of slots
    bool locked = false;
  };

  void add_chunk_locked();  // throws std::bad_alloc
  const chunk* chunk_of_locked(const unsigned char* p) const noexcept;

  limits limits_;
  bool report_unlocked_ = false;  // the process arena says once when mlock fails
  mutable std::mutex mu_;
  std::vector<chunk> chunks_;
  std::vector<unsigned char*> free_;  // capacity: every slot made, so push_back never throws
  std::size_t carved_ = 0;            // slots of the last chunk handed out at least once
  std::size_t in_use_ = 0;
  std::size_t bytes_ = 0;
  std::size_t unlocked_bytes_ = 0;
};

}  // namespace bokbok::crypto
