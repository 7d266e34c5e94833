// Key files (src/crypto/key_file.hpp): the format, the permission check, malformed files.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "bokbok/key.hpp"
#include "crypto/key_file.hpp"

using namespace bokbok::crypto;

namespace {

// A fresh directory under $TMPDIR, removed with everything in it.
struct temp_dir {
  std::string path;
  temp_dir() {
    std::string tmpl = std::filesystem::temp_directory_path().string() + "/bokbok-key-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

void write_file(const std::string& path, const std::string& text, mode_t mode) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
  }
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

mode_t mode_of(const std::string& path) {
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

const std::string sample_hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

}  // namespace

TEST_CASE("a saved key file loads back as the same key, with mode 0600 and one line") {
  temp_dir dir;
  const key k = key::random();
  save_key_file(dir.file("k"), k, false);
  CHECK(mode_of(dir.file("k")) == 0600);
  std::ifstream in(dir.file("k"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.size() == key_file_size);
  CHECK(text == "bokbok-key-v1 " + to_hex(k.bytes()) + "\n");
  CHECK(load_key_file(dir.file("k")).equals(k));
}

TEST_CASE("the public key type saves and loads key files") {
  temp_dir dir;
  const auto k = bokbok::key::generate();
  k.save(dir.file("pub"));
  const auto back = bokbok::key::load(dir.file("pub"));
  CHECK(sodium_memcmp(k.bytes().data(), back.bytes().data(), 32) == 0);
  CHECK_THROWS_AS(k.save(dir.file("pub")), bokbok::key_error);
}

TEST_CASE("saving refuses to replace a file unless asked, and then tightens its mode") {
  temp_dir dir;
  write_file(dir.file("k"), "old", 0644);
  const key k = key::random();
  CHECK_THROWS_WITH_AS(save_key_file(dir.file("k"), k, false),
                       (dir.file("k") + ": already exists; not replacing it").c_str(),
                       bokbok::key_error);
  save_key_file(dir.file("k"), k, true);
  CHECK(mode_of(dir.file("k")) == 0600);
  CHECK(load_key_file(dir.file("k")).equals(k));
}

TEST_CASE("a key file readable by group or others is refused with its path and mode") {
  temp_dir dir;
  for (mode_t m : {0644, 0640, 0604, 0620, 0602}) {
    write_file(dir.file("k"), "bokbok-key-v1 " + sample_hex + "\n", m);
    char expected[16];
    std::snprintf(expected, sizeof expected, "%04o", static_cast<unsigned>(m));
    CHECK_THROWS_WITH_AS(load_key_file(dir.file("k")),
                         (dir.file("k") + ": permissions " + expected +
                          " are too open: a key file must not be accessible by group or "
                          "others; run: chmod 600 " + dir.file("k"))
                             .c_str(),
                         bokbok::key_error);
  }
  write_file(dir.file("k"), "bokbok-key-v1 " + sample_hex + "\n", 0400);
  CHECK(to_hex(load_key_file(dir.file("k")).bytes()) == sample_hex);
}

TEST_CASE("malformed key files are refused without showing their contents") {
  temp_dir dir;
  const std::string bad[] = {
      "",
      "bokbok-key-v2 " + sample_hex + "\n",
      "bokbok-key-v1" + sample_hex + "\n",
      "bokbok-key-v1 " + sample_hex.substr(0, 62) + "\n",
      "bokbok-key-v1 " + sample_hex + "00\n",
      "bokbok-key-v1 " + sample_hex.substr(0, 63) + "g\n",
      "bokbok-key-v1 " + sample_hex + "\nsecond line\n",
      "bokbok-key-v1  " + sample_hex + "\n",
      "bokbok-key-v1 " + sample_hex + "\r\n",
  };
  for (const auto& text : bad) {
    INFO("contents: " << text);
    write_file(dir.file("k"), text, 0600);
    try {
      load_key_file(dir.file("k"));
      FAIL("loaded a malformed key file");
    } catch (const bokbok::key_error& e) {
      const std::string msg = e.what();
      CHECK(msg.starts_with(dir.file("k") + ": not a bokbok key file: "));
      CHECK(msg.find(sample_hex.substr(0, 16)) == std::string::npos);
    }
  }
}

TEST_CASE("a key file without its final newline, or in upper case, is accepted") {
  temp_dir dir;
  write_file(dir.file("k"), "bokbok-key-v1 " + sample_hex, 0600);
  CHECK(to_hex(load_key_file(dir.file("k")).bytes()) == sample_hex);
  std::string upper = sample_hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  write_file(dir.file("k"), "bokbok-key-v1 " + upper + "\n", 0600);
  CHECK(to_hex(load_key_file(dir.file("k")).bytes()) == sample_hex);
}

TEST_CASE("a missing file, a directory and an oversized file are refused clearly") {
  temp_dir dir;
  CHECK_THROWS_WITH_AS(load_key_file(dir.file("none")),
                       ("cannot open key file " + dir.file("none") + ": No such file or directory").c_str(),
                       bokbok::key_error);
  REQUIRE(::chmod(dir.path.c_str(), 0700) == 0);
  CHECK_THROWS_WITH_AS(load_key_file(dir.path), (dir.path + ": not a regular file").c_str(),
                       bokbok::key_error);
  write_file(dir.file("big"), std::string(5000, 'a'), 0600);
  CHECK_THROWS_AS(load_key_file(dir.file("big")), bokbok::key_error);
}
