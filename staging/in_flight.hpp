// Content being staged right now by this process's workers, per entity (internal).
//
// Two workers staging the same content at once would collide on the unique index: the later
// COPY waits for the earlier transaction, then fails, and its whole file is redone. Instead a
// load first claims all of its file's content hashes here, in one step. Each hash has a queue
// of claimants in claim order; a load stages at once the hashes it is first in line for, and
// the others only after everyone ahead has ended (committed: a duplicate; rolled back: it
// stages them itself). A load waits only for loads that claimed before it, so no cycle can
// form. Stagers in other processes are still arbitrated by the unique index.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/hash.hpp"

namespace ingestd::staging {

class InFlight {
 public:
  using Ticket = std::uint64_t;

  // Ends the load's claims when destroyed: place it so that it outlives the transaction.
  class Claim {
   public:
    Claim(InFlight& owner, Ticket t) : owner_(&owner), ticket_(t) {}
    Claim(Claim&& o) noexcept : owner_(o.owner_), ticket_(o.ticket_) { o.owner_ = nullptr; }
    Claim& operator=(Claim&&) = delete;
    ~Claim() {
      if (owner_) owner_->end(ticket_);
    }
    // Blocks until every load that claimed `d` before this one has ended.
    void wait_turn(const Digest& d) const { owner_->wait_turn(d, ticket_); }

   private:
    InFlight* owner_;
    Ticket ticket_;
  };

  // Claims all `digests` at once; first_in_line[i] tells whether digest i may be staged now.
  Claim claim(const std::vector<Digest>& digests, std::vector<bool>& first_in_line) {
    std::lock_guard lock(mu_);
    Ticket t = next_++;
    auto& mine = owned_[t];
    first_in_line.assign(digests.size(), true);
    for (std::size_t i = 0; i < digests.size(); ++i) {
      auto& line = queue_[digests[i]];
      first_in_line[i] = line.empty();
      line.push_back(t);
      mine.push_back(digests[i]);
    }
    return Claim(*this, t);
  }

 private:
  void wait_turn(const Digest& d, Ticket t) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return queue_.at(d).front() == t; });
  }

  void end(Ticket t) {
    {
      std::lock_guard lock(mu_);
      auto it = owned_.find(t);
      for (const auto& d : it->second) {
        auto q = queue_.find(d);
        q->second.erase(std::find(q->second.begin(), q->second.end(), t));
        if (q->second.empty()) queue_.erase(q);
      }
      owned_.erase(it);
    }
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  Ticket next_ = 1;
  std::unordered_map<Digest, std::vector<Ticket>, DigestHash> queue_;
  std::unordered_map<Ticket, std::vector<Digest>> owned_;
};

}  // namespace ingestd::staging
