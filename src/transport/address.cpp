#include "transport/address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <charconv>

#include "bokbok/error.hpp"
#include "transport/command_line.hpp"

namespace bokbok::transport {

namespace {

constexpr std::string_view known_forms =
    "one of tcp:HOST:PORT, unix:PATH, unix:@NAME, fd:R,W, stdio, inetd, systemd, "
    "exec:COMMAND or ssh:[USER@]HOST[:PORT] COMMAND";
constexpr std::string_view tcp_form =
    "tcp:HOST:PORT (HOST a name, an IPv4 address, [IPv6] or *; PORT a number or service "
    "name)";
constexpr std::string_view tcp_list_form =
    "tcp:HOST:PORT,HOST:PORT,... (a list to connect to; each entry a HOST:PORT or "
    "tcp:HOST:PORT, HOST a name, an IPv4 address or [IPv6])";
constexpr std::string_view unix_form = "unix:PATH or unix:@NAME (abstract)";
constexpr std::string_view fd_form =
    "fd:R,W with R and W non-negative file descriptor numbers, e.g. fd:3,4";

// The longest path (or abstract name) sockaddr_un holds, keeping a path's NUL.
constexpr std::size_t max_unix_path = sizeof(sockaddr_un{}.sun_path) - 1;

// Throws the one error this parser gives: the address quoted, what was expected, and,
// when there is more to say than the expected form, why this text is not it.
[[noreturn]] void bad(std::string_view text, std::string_view expected, std::string_view why = {}) {
  std::string m =
      "bokbok: bad address \"" + std::string(text) + "\": expected " + std::string(expected);
  if (!why.empty()) m += "; " + std::string(why);
  throw address_error(m);
}

bool parse_fd(std::string_view s, int& out) {
  if (s.empty() || s.size() > 9) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && out >= 0;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

void check_port(std::string_view text, std::string_view port) {
  if (port.empty()) bad(text, tcp_form, "the port is missing");
  if (all_digits(port)) {
    unsigned n = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
    if (ec != std::errc() || p != port.data() + port.size() || n > 65535)
      bad(text, tcp_form,
          "port " + std::string(port) + " is out of range (1 to 65535, or 0 for any port)");
    return;
  }
  auto is_letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  bool service = std::all_of(port.begin(), port.end(), is_name_char) &&
                 std::any_of(port.begin(), port.end(), is_letter) &&
                 (is_letter(port.front()) || (port.front() >= '0' && port.front() <= '9'));
  if (!service)
    bad(text, tcp_form,
        "\"" + std::string(port) + "\" is neither a port number nor a service name");
}

// An IPv6 literal, optionally with a zone ("fe80::1%eth0").
bool is_ipv6_literal(std::string_view host) {
  auto zone = host.find('%');
  std::string addr(host.substr(0, zone));
  if (zone != std::string_view::npos && zone + 1 == host.size()) return false;
  in6_addr a;
  return inet_pton(AF_INET6, addr.c_str(), &a) == 1;
}

tcp_address parse_tcp(std::string_view text, std::string_view rest) {
  tcp_address a;
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos)
      bad(text, tcp_form, "the '[' of the IPv6 address is not closed by ']'");
    std::string_view host = rest.substr(1, close - 1);
    if (host.empty()) bad(text, tcp_form, "the host in brackets is empty");
    if (!is_ipv6_literal(host))
      bad(text, tcp_form, "\"" + std::string(host) + "\" in brackets is not an IPv6 address");
    std::string_view after = rest.substr(close + 1);
    if (after.empty() || after.front() != ':') bad(text, tcp_form, "the port is missing");
    port = after.substr(1);
    a.host = std::string(host);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) bad(text, tcp_form, "the port is missing");
    std::string_view host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      bad(text, tcp_form, "an IPv6 address must be written in brackets, e.g. tcp:[::1]:80");
    if (host.empty()) bad(text, tcp_form, "the host is empty (use * for every address)");
    if (host != "*" && !std::all_of(host.begin(), host.end(), is_name_char))
      bad(text, tcp_form, "\"" + std::string(host) + "\" is not a host name or address");
    if (host != "*") a.host = std::string(host);
  }
  check_port(text, port);
  a.port = std::string(port);
  return a;
}

// tcp:ENTRY,ENTRY,...: each entry HOST:PORT or tcp:HOST:PORT, checked as one address;
// errors quote the whole list.
tcp_address parse_tcp_list(std::string_view text, std::string_view rest) {
  std::vector<host_port> entries;
  for (std::size_t start = 0;;) {
    auto comma = rest.find(',', start);
    std::string_view entry = rest.substr(start, comma == std::string_view::npos ? rest.npos : comma - start);
    if (entry.empty())
      bad(text, tcp_list_form, "entry " + std::to_string(entries.size() + 1) + " is empty");
    if (entry.substr(0, 4) == "tcp:") entry.remove_prefix(4);
    if (entries.size() == max_address_list)
      bad(text, tcp_list_form,
          "a list has at most " + std::to_string(max_address_list) + " addresses");
    tcp_address one;
    try {
      one = parse_tcp(entry, entry);
    } catch (const address_error& e) {
      // The entry's own reason, after its form: "...expected tcp:HOST:PORT ...; why".
      std::string m = e.what();
      std::string after_form = std::string(tcp_form) + "; ";
      auto why = m.find(after_form);
      bad(text, tcp_list_form,
          "entry " + std::to_string(entries.size() + 1) + " \"" + std::string(entry) +
              "\" is not HOST:PORT" +
              (why == std::string::npos ? "" : ": " + m.substr(why + after_form.size())));
    }
    if (one.host.empty())
      bad(text, tcp_list_form,
          "entry " + std::to_string(entries.size() + 1) +
              " is *: every address is for listening, a list is for connecting");
    entries.push_back({std::move(one.host), std::move(one.port)});
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  tcp_address a{entries.front().host, entries.front().port, {}};
  a.more.assign(std::make_move_iterator(entries.begin() + 1), std::make_move_iterator(entries.end()));
  return a;
}

unix_address parse_unix(std::string_view text, std::string_view rest) {
  unix_address a;
  if (!rest.empty() && rest.front() == '@') {
    a.abstract = true;
    rest.remove_prefix(1);
    if (rest.empty()) bad(text, unix_form, "the abstract name after '@' is empty");
  } else if (rest.empty()) {
    bad(text, unix_form, "the path is empty");
  }
  if (rest.find('\0') != std::string_view::npos)
    bad(text, unix_form, "the path contains a NUL byte");
  if (rest.size() > max_unix_path)
    bad(text, unix_form,
        (a.abstract ? "the name is " : "the path is ") + std::to_string(rest.size()) +
            " bytes long; at most " + std::to_string(max_unix_path) +
            " fit in a UNIX socket address");
  a.path = std::string(rest);
  return a;
}

fd_pair_address parse_fds(std::string_view text, std::string_view rest) {
  auto comma = rest.find(',');
  fd_pair_address a{};
  if (comma == std::string_view::npos || !parse_fd(rest.substr(0, comma), a.in_fd) ||
      !parse_fd(rest.substr(comma + 1), a.out_fd))
    bad(text, fd_form);
  return a;
}

constexpr std::string_view exec_form = "exec:COMMAND [ARG...]";
constexpr std::string_view ssh_form =
    "ssh:[USER@]HOST[:PORT] [SSH_OPTION...] [--] COMMAND [ARG...]";

exec_address parse_exec(std::string_view text, std::string_view rest) {
  exec_address a{split_command(rest, text)};
  if (a.argv.empty() || a.argv.front().empty()) bad(text, exec_form, "the command is missing");
  return a;
}

// ssh options that take a value in the next word (ssh(1)).
bool ssh_option_takes_value(std::string_view opt) {
  static constexpr std::string_view with_value[] = {"-o", "-i", "-F", "-J", "-c", "-m", "-E",
                                                    "-b", "-B", "-S", "-l", "-p", "-O", "-Q"};
  return std::find(std::begin(with_value), std::end(with_value), opt) != std::end(with_value);
}

ssh_address parse_ssh(std::string_view text, std::string_view rest) {
  ssh_address a;
  auto blank = rest.find_first_of(" \t");
  std::string_view dest = rest.substr(0, blank);
  std::vector<std::string> words =
      split_command(blank == std::string_view::npos ? "" : rest.substr(blank), text);
  if (auto at = dest.rfind('@'); at != std::string_view::npos) {
    a.user = std::string(dest.substr(0, at));
    dest.remove_prefix(at + 1);
    if (a.user.empty()) bad(text, ssh_form, "the user before '@' is empty");
    if (!std::all_of(a.user.begin(), a.user.end(), [](char c) { return is_name_char(c); }))
      bad(text, ssh_form, "\"" + a.user + "\" is not a user name");
  }
  std::string_view port;
  if (!dest.empty() && dest.front() == '[') {
    auto close = dest.find(']');
    if (close == std::string_view::npos || !is_ipv6_literal(dest.substr(1, close - 1)))
      bad(text, ssh_form, "a host in brackets must be an IPv6 address, e.g. [::1]");
    a.host = std::string(dest.substr(1, close - 1));
    std::string_view after = dest.substr(close + 1);
    if (!after.empty() && after.front() != ':') bad(text, ssh_form, "junk after ']'");
    if (!after.empty()) port = after.substr(1);
    if (!after.empty() && port.empty()) bad(text, ssh_form, "the port after ':' is empty");
  } else {
    auto colon = dest.find(':');
    if (colon != dest.rfind(':'))
      bad(text, ssh_form, "an IPv6 address must be written in brackets, e.g. ssh:[::1]");
    a.host = std::string(dest.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = dest.substr(colon + 1);
      if (port.empty()) bad(text, ssh_form, "the port after ':' is empty");
    }
    if (a.host.find(':') != std::string::npos)
      bad(text, ssh_form, "an IPv6 address must be written in brackets, e.g. ssh:[::1]");
  }
  if (a.host.empty()) bad(text, ssh_form, "the host is missing");
  if (a.host.front() == '-' ||
      !std::all_of(a.host.begin(), a.host.end(), [](char c) { return is_name_char(c) || c == ':' || c == '%'; }))
    bad(text, ssh_form, "\"" + a.host + "\" is not a host name or address");
  if (!port.empty()) {
    if (!all_digits(port) || port.size() > 5 || std::stoul(std::string(port)) > 65535 ||
        std::stoul(std::string(port)) == 0)
      bad(text, ssh_form, "port \"" + std::string(port) + "\" is not a number from 1 to 65535");
    a.port = std::string(port);
  }
  std::size_t i = 0;
  for (; i < words.size() && !words[i].empty() && words[i].front() == '-'; ++i) {
    if (words[i] == "--") {
      ++i;
      break;
    }
    a.ssh_options.push_back(words[i]);
    if (ssh_option_takes_value(words[i])) {
      if (i + 1 == words.size()) bad(text, ssh_form, "ssh option " + words[i] + " needs a value");
      a.ssh_options.push_back(words[++i]);
    }
  }
  a.argv.assign(words.begin() + long(i), words.end());
  if (a.argv.empty() || a.argv.front().empty())
    bad(text, ssh_form, "the remote command is missing (e.g. ssh:host bokbok-demo-server --stdio)");
  return a;
}

}  // namespace

address parse_address(std::string_view text) {
  if (text == "stdio") return stdio_address{};
  if (text == "inetd") return inetd_address{};
  if (text == "systemd") return systemd_address{};
  auto colon = text.find(':');
  if (colon == std::string_view::npos) bad(text, known_forms);
  std::string_view scheme = text.substr(0, colon), rest = text.substr(colon + 1);
  if (scheme == "tcp")
    return rest.find(',') == std::string_view::npos ? parse_tcp(text, rest)
                                                     : parse_tcp_list(text, rest);
  if (scheme == "unix") return parse_unix(text, rest);
  if (scheme == "fd") return parse_fds(text, rest);
  if (scheme == "exec") return parse_exec(text, rest);
  if (scheme == "ssh") return parse_ssh(text, rest);
  bad(text, known_forms, "unknown scheme \"" + std::string(scheme) + ":\"");
}

std::string to_string(const address& a) {
  struct printer {
    std::string operator()(const fd_pair_address& f) const {
      return "fd:" + std::to_string(f.in_fd) + "," + std::to_string(f.out_fd);
    }
    std::string operator()(const stdio_address&) const { return "stdio"; }
    static std::string entry(const std::string& host, const std::string& port) {
      if (host.find(':') != std::string::npos) return "[" + host + "]:" + port;
      return host + ":" + port;
    }
    std::string operator()(const tcp_address& t) const {
      if (t.host.empty()) return "tcp:*:" + t.port;
      std::string out = "tcp:" + entry(t.host, t.port);
      for (const auto& e : t.more) out += "," + entry(e.host, e.port);
      return out;
    }
    std::string operator()(const unix_address& u) const {
      return (u.abstract ? "unix:@" : "unix:") + u.path;
    }
    std::string operator()(const inetd_address&) const { return "inetd"; }
    std::string operator()(const systemd_address&) const { return "systemd"; }
    std::string operator()(const exec_address& e) const { return "exec:" + shell_join(e.argv); }
    std::string operator()(const ssh_address& s) const {
      std::string out = "ssh:";
      if (!s.user.empty()) out += s.user + "@";
      out += s.host.find(':') != std::string::npos ? "[" + s.host + "]" : s.host;
      if (!s.port.empty()) out += ":" + s.port;
      if (!s.ssh_options.empty()) out += " " + shell_join(s.ssh_options) + " --";
      return out + " " + shell_join(s.argv);
    }
  };
  return std::visit(printer{}, a);
}

}  // namespace bokbok::transport
