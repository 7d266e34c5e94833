#include "api/log_server.hpp"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "base/log_limiter.hpp"

namespace bokbok::detail {

namespace {

constexpr std::size_t max_cause = 160;

std::string without_bokbok(std::string_view s) {
  if (s.starts_with("bokbok: ")) s.remove_prefix(8);
  return std::string(s);
}

// Removes the " (connection to PEER)" an error's text ends with (the client is named
// apart, and would make every client's cause its own).
void drop_peer(std::string& s, std::string_view peer) {
  std::string tail = " (connection to " + std::string(peer) + ")";
  for (auto at = s.find(tail); at != std::string::npos; at = s.find(tail)) s.erase(at, tail.size());
}

// "user \"x\\\"y\": ..." -> "user \"...\": ...": quoted text is the peer's.
std::string elide_quoted(std::string_view s) {
  std::string out;
  bool quoted = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quoted) {
      if (c == '\\') ++i;  // an escaped byte, quote included
      else if (c == '"') {
        out += "...\"";
        quoted = false;
      }
      continue;
    }
    out.push_back(c);
    if (c == '"') quoted = true;
  }
  if (quoted) out += "...\"";
  return out;
}

std::string_view descriptor_limit_kind(std::string_view why) {
  std::string_view system = std::strerror(ENFILE), process = std::strerror(EMFILE);
  if (why.ends_with(system)) return "the system's limit on open files (fs.file-max)";
  if (why.ends_with(process)) return "this process's limit on file descriptors (RLIMIT_NOFILE";
  return "";
}

}  // namespace

std::string failure_cause(std::string_view why, std::string_view peer) {
  std::string s = without_bokbok(why);
  drop_peer(s, peer);
  s = elide_quoted(s);
  if (s.size() > max_cause) s = s.substr(0, max_cause) + "...";
  return "clients failed: " + s;
}

void log_client_failure(const std::string& peer, std::string_view why) {
  if (!base::log_on(log_level::warning)) return;
  std::string text = without_bokbok(why);
  drop_peer(text, peer);
  base::log_limited(log_level::warning, "server", failure_cause(why, peer),
                    "client " + peer + " failed: " + text);
}

void accept_episode::failed(std::string_view listener, std::string_view why) {
  ++failures_;
  if (going_on_) return;
  going_on_ = true;
  since_ = clock::now();
  failures_ = 1;
  told_ = 0;
  std::string text = without_bokbok(why);
  std::string cause(descriptor_limit_kind(text));
  if (cause.ends_with("(RLIMIT_NOFILE")) {
    rlimit r{};
    ::getrlimit(RLIMIT_NOFILE, &r);
    cause += ", soft limit " + std::to_string(r.rlim_cur) + ")";
  }
  std::string line = text + (cause.empty() ? "" : ": the server is out of file descriptors, " +
                                                      cause + " is reached");
  base::log(log_level::error, "server",
            line + "; new clients wait in the listen backlog of " + std::string(listener) +
                " (or are refused as out of resources) until some are freed; logged once");
}

void accept_episode::accepted(std::string_view listener) {
  if (!going_on_) return;
  going_on_ = false;
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(clock::now() - since_).count();
  base::log(log_level::info, "server",
            "accepting clients on " + std::string(listener) + " again, after " +
                std::to_string(secs) + " s, " + base::with_thousands(failures_) +
                " failed accepts and " + base::with_thousands(told_) +
                " clients refused for it");
  told_ = 0;
}

}  // namespace bokbok::detail
