// Test support: a well-behaved client that keeps calling `echo` on a server of its own
// connection, on a thread of its own, while a test attacks that server from elsewhere.
// It counts answers and errors and keeps the longest wait for an answer, the call still
// waiting included, so a stalled server shows even before the call gives up.
#pragma once

#include <bokbok/bokbok.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

namespace bokbok_test {

class good_client {
 public:
  // Connects to `address` (throws as bokbok::connect does) and starts calling.
  explicit good_client(const std::string& address) : conn_(bokbok::connect(address)) {
    thread_ = std::thread([this] { run(); });
  }
  ~good_client() { stop(); }
  good_client(const good_client&) = delete;
  good_client& operator=(const good_client&) = delete;

  // Stops after the call in progress (at most its 15 s timeout).
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int answers() const { return answers_; }
  int errors() const { return errors_; }
  std::string first_error() const {
    std::lock_guard lock(mu_);
    return first_error_;
  }
  // The longest a call has waited so far, the one waiting now included.
  std::chrono::milliseconds longest_wait() const {
    std::lock_guard lock(mu_);
    auto longest = longest_;
    if (in_call_) longest = std::max(longest, since(call_started_));
    return longest;
  }

 private:
  using clock = std::chrono::steady_clock;
  static std::chrono::milliseconds since(clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - t);
  }
  void run() {
    for (int i = 0; !stop_ && i < 10'000'000; ++i) {
      {
        std::lock_guard lock(mu_);
        call_started_ = clock::now();
        in_call_ = true;
      }
      std::string error;
      try {
        bokbok::call_options o;
        o.timeout = std::chrono::seconds(15);
        const std::string text = "hi " + std::to_string(i);
        bokbok::message r = conn_.request({"echo", text}, o);
        if (r != bokbok::message{text}) error = "a wrong answer";
      } catch (const std::exception& e) {
        error = e.what();
      }
      std::lock_guard lock(mu_);
      in_call_ = false;
      longest_ = std::max(longest_, since(call_started_));
      if (error.empty()) {
        ++answers_;
      } else if (errors_++ == 0) {
        first_error_ = error;
      }
    }
  }
  bokbok::connection conn_;
  std::atomic<bool> stop_{false};
  std::atomic<int> answers_{0}, errors_{0};
  mutable std::mutex mu_;  // guards the fields below
  std::string first_error_;
  clock::time_point call_started_{};
  bool in_call_ = false;
  std::chrono::milliseconds longest_{0};
  std::thread thread_;  // last: started once the fields above exist
};

}  // namespace bokbok_test
