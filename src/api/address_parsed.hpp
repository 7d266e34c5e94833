// address::parsed (include/bokbok/address.hpp): the public address over the transport
// layer's parsed form, for the api files that open what an address names.
#pragma once

#include "bokbok/address.hpp"
#include "transport/address.hpp"

namespace bokbok {

struct address::parsed {
  transport::address value;
};

}  // namespace bokbok
