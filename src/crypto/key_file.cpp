#include "crypto/key_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/unique_fd.hpp"
#include "bokbok/key.hpp"

namespace bokbok::crypto {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

std::string octal_mode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

[[noreturn]] void malformed(const std::string& path, std::string_view why) {
  throw key_error(path + ": not a bokbok key file: " + std::string(why) +
                  " (expected one line \"" + std::string(key_file_tag) +
                  " <64 hex digits>\")");
}

}  // namespace

secret_bytes read_secret_file(const std::string& path, std::size_t max_size,
                              std::string_view what) {
  const base::unique_fd owner(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  const int fd = owner.get();  // closed on every path by `owner`
  if (fd < 0) throw key_error("cannot open " + std::string(what) + " " + path + ": " + errno_text(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0)
    throw key_error("cannot stat " + path + ": " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) throw key_error(path + ": not a regular file");
  if ((st.st_mode & 077) != 0)
    throw key_error(path + ": permissions " + octal_mode(st.st_mode) + " are too open: a " +
                    std::string(what) + " must not be accessible by group or others; " +
                    "run: chmod 600 " + path);
  if (static_cast<std::uint64_t>(st.st_size) > max_size)
    throw key_error(path + ": " + std::string(what) + " of " + std::to_string(st.st_size) +
                    " bytes is larger than the limit of " + std::to_string(max_size) + " bytes");
  secret_bytes buf(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < buf.size()) {
    const ssize_t n = ::read(fd, buf.data() + got, buf.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw key_error("cannot read " + path + ": " + errno_text(errno));
    if (n == 0) throw key_error(path + ": the file shrank while being read");
    got += static_cast<std::size_t>(n);
  }
  unsigned char extra;
  ssize_t n;
  while ((n = ::read(fd, &extra, 1)) < 0 && errno == EINTR) {
  }
  if (n != 0) throw key_error(path + ": the file grew while being read");
  return buf;
}

std::string format_key_file(const key& k) {
  std::string out(key_file_tag);
  out += ' ';
  out += to_hex(k.bytes());
  out += '\n';
  return out;
}

key parse_key_file(std::string_view text, const std::string& path) {
  if (text.empty()) malformed(path, "the file is empty");
  if (!text.starts_with(key_file_tag) || text.size() <= key_file_tag.size() ||
      text[key_file_tag.size()] != ' ')
    malformed(path, "it does not start with \"" + std::string(key_file_tag) + " \"");
  std::string_view rest = text.substr(key_file_tag.size() + 1);
  if (rest.ends_with('\n')) rest.remove_suffix(1);
  if (rest.size() != key_hex_len)
    malformed(path, rest.size() > key_hex_len && rest.find('\n') != std::string_view::npos
                        ? "more than one line"
                        : "the key is not 64 hex digits");
  key k;
  if (!from_hex(rest, std::span<unsigned char>(k.data(), key::size)))
    malformed(path, "the key is not 64 hex digits");
  return k;
}

key load_key_file(const std::string& path) {
  // Anything much larger than one line is not a key file; 4 KiB bounds the read.
  const secret_bytes text = read_secret_file(path, 4096, "key file");
  return parse_key_file(
      std::string_view(reinterpret_cast<const char*>(text.data()), text.size()), path);
}

void save_key_file(const std::string& path, const key& k, bool overwrite) {
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (overwrite ? O_TRUNC : O_EXCL);
  base::unique_fd owner(::open(path.c_str(), flags, 0600));
  const int fd = owner.get();  // closed on every path by `owner`, or below to see the error
  if (fd < 0) {
    if (errno == EEXIST) throw key_error(path + ": already exists; not replacing it");
    throw key_error("cannot create key file " + path + ": " + errno_text(errno));
  }
  // A replaced file keeps its old mode through O_TRUNC: tighten it first.
  if (::fchmod(fd, 0600) != 0)
    throw key_error("cannot set mode 0600 on " + path + ": " + errno_text(errno));
  std::string text = format_key_file(k);
  std::size_t done = 0;
  int err = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  sodium_memzero(text.data(), text.size());
  if (err != 0) throw key_error("cannot write " + path + ": " + errno_text(err));
  if (::fsync(fd) != 0) throw key_error("cannot write " + path + ": " + errno_text(errno));
  if (::close(owner.release()) != 0) throw key_error("cannot write " + path + ": " + errno_text(errno));
}

}  // namespace bokbok::crypto
