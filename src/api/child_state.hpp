// child_handle::state (include/bokbok/byte_channel.hpp): the public child handle over
// the transport layer's child_process, which does the waiting, reaping and signalling.
#pragma once

#include <memory>

#include "bokbok/byte_channel.hpp"
#include "transport/child_process.hpp"

namespace bokbok {

struct child_handle::state {
  std::shared_ptr<transport::child_process> child;
};

}  // namespace bokbok
