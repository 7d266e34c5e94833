// bokbok::byte_channel and open_byte_channel (include/bokbok/byte_channel.hpp): the
// descriptors an address names, opened by the transport layer as connect() opens them,
// handed over without a connection on top.
#include "bokbok/byte_channel.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>

#include "api/address_parsed.hpp"
#include "api/child_state.hpp"
#include "api/event_loop.hpp"
#include "transport/child_process.hpp"
#include "transport/sockets.hpp"
#include "transport/stdio.hpp"

namespace bokbok {

byte_channel::byte_channel(int in_fd, int out_fd, std::string name) noexcept
    : in_fd_(in_fd), out_fd_(out_fd), name_(std::move(name)) {}

byte_channel::byte_channel(byte_channel&& other) noexcept
    : in_fd_(std::exchange(other.in_fd_, -1)),
      out_fd_(std::exchange(other.out_fd_, -1)),
      name_(std::move(other.name_)),
      child_(std::exchange(other.child_, std::nullopt)) {}

byte_channel& byte_channel::operator=(byte_channel&& other) noexcept {
  if (this != &other) {
    close();
    in_fd_ = std::exchange(other.in_fd_, -1);
    out_fd_ = std::exchange(other.out_fd_, -1);
    name_ = std::move(other.name_);
    child_ = std::exchange(other.child_, std::nullopt);
  }
  return *this;
}

byte_channel::~byte_channel() { close(); }

void byte_channel::close_write() noexcept {
  if (out_fd_ < 0) return;
  if (out_fd_ == in_fd_) {
    ::shutdown(out_fd_, SHUT_WR);  // the socket stays open for reading
    return;
  }
  ::close(std::exchange(out_fd_, -1));
}

void byte_channel::close() noexcept {
  if (out_fd_ >= 0 && out_fd_ != in_fd_) ::close(out_fd_);
  if (in_fd_ >= 0) ::close(in_fd_);
  in_fd_ = out_fd_ = -1;
  // After the descriptors: the child reads end of file and may exit within its grace.
  if (child_) child_->release();
}

std::pair<int, int> byte_channel::release_fds() noexcept {
  return {std::exchange(in_fd_, -1), std::exchange(out_fd_, -1)};
}

namespace {

// fd:R,W: both must be open before the channel takes them (else it takes neither).
byte_channel adopt_fds(const address& where) {
  for (int fd : {where.in_fd(), where.out_fd()})
    if (::fcntl(fd, F_GETFD) < 0)
      throw transport_error("bokbok: fd " + std::to_string(fd) + " of " + where.to_string() +
                            " is not open");
  return byte_channel(where.in_fd(), where.out_fd(), where.to_string());
}

}  // namespace

byte_channel open_byte_channel(const address& where, const channel_options& opts) {
  const transport::address& a = where.internal().value;
  switch (where.type()) {
    case address::kind::fd:
      return adopt_fds(where);
    case address::kind::stdio: {
      auto [in, out] = transport::take_stdio();
      return byte_channel(in.release(), out.release(), where.to_string());
    }
    case address::kind::tcp:
    case address::kind::unix_socket: {
      // tcp:*:PORT is an address_error there: it is for listening.
      auto s = transport::connect_socket(a, opts.connect_timeout);
      int fd = s.fd.release();
      return byte_channel(fd, fd, where.to_string());
    }
    case address::kind::exec:
    case address::kind::ssh: {
      // Watched and reaped by the default loop, as connect()'s children are.
      auto s = transport::child_process::spawn(transport::spawn_request_for(a, opts.child),
                                               detail::default_event_loop());
      std::string name = where.to_string() + " (pid " + std::to_string(s.child->pid()) + ")";
      // Socketpair mode (child.socketpair): one socket both ways, as for unix:.
      const int in = s.from_child.release();
      const int out = s.to_child ? s.to_child.release() : in;
      byte_channel ch(in, out, std::move(name));
      ch.child_.emplace(std::make_shared<child_handle::state>(
          child_handle::state{std::move(s.child)}));
      return ch;
    }
    case address::kind::inetd:
    case address::kind::systemd:
      break;
  }
  throw address_error("bokbok: " + where.to_string() +
                      " names sockets to listen on; a byte channel connects");
}

byte_channel open_byte_channel(std::string_view where, const channel_options& opts) {
  return open_byte_channel(address::parse(where), opts);
}

}  // namespace bokbok
