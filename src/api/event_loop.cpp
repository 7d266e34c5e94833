#include "api/event_loop.hpp"

#include <stdexcept>
#include <string>
#include <system_error>

#include "bokbok/error.hpp"

namespace bokbok::detail {

std::shared_ptr<io::loop> start_event_loop() {
  try {
    return io::loop::start();
  } catch (const std::invalid_argument& e) {
    throw usage_error(std::string("bokbok: ") + e.what());
  } catch (const std::system_error& e) {
    throw resource_error(std::string("bokbok: cannot start the event loop: ") + e.what());
  }
}

std::shared_ptr<io::loop> default_event_loop() {
  static const std::shared_ptr<io::loop> loop = start_event_loop();
  return loop;
}

}  // namespace bokbok::detail
