// call_table: slots indexed by id mod capacity (see call_table.hpp for the id rule).
#include "rpc/call_table.hpp"

namespace bokbok::rpc {

namespace {
constexpr std::size_t first_capacity = 8;
}  // namespace

outgoing_call& call_table::start() {
  if ((live_ + 1) * 2 > slots_.size()) grow();
  const std::size_t mask = slots_.size() - 1;
  // At most half the slots are taken: a free one is a few steps away.
  for (;;) {
    if (++last_id_ == 0) {
      ++wraps_;
      continue;  // 0 is never an id
    }
    outgoing_call& s = slots_[last_id_ & mask];
    if (s.id) continue;
    s.id = last_id_;
    s.seq = (wraps_ << 32) | last_id_;
    ++live_;
    return s;
  }
}

outgoing_call* call_table::find(std::uint32_t id) {
  if (!id || slots_.empty()) return nullptr;
  outgoing_call& s = slots_[id & (slots_.size() - 1)];
  return s.id == id ? &s : nullptr;
}

outgoing_call* call_table::find_seq(std::uint64_t seq) {
  outgoing_call* c = find(static_cast<std::uint32_t>(seq));
  return c && c->seq == seq ? c : nullptr;
}

outgoing_call call_table::take(outgoing_call& c) {
  outgoing_call out = std::move(c);
  c = outgoing_call{};
  --live_;
  return out;
}

// Doubles the table; each call moves to the slot of its id in the larger one (distinct
// mod the old size, so distinct mod the new one).
void call_table::grow() {
  std::vector<outgoing_call> bigger(slots_.empty() ? first_capacity : slots_.size() * 2);
  const std::size_t mask = bigger.size() - 1;
  for (auto& s : slots_)
    if (s.id) bigger[s.id & mask] = std::move(s);
  slots_.swap(bigger);
}

}  // namespace bokbok::rpc
