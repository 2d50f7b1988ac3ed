// Protects the in-process claim queue that keeps two stager workers from staging the same
// content at once: first claimant goes first, later ones wait for it to end, in claim order.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "staging/in_flight.hpp"

using namespace ingestd;
using namespace std::chrono_literals;

TEST_CASE("the first claimant of a hash stages it now and a later one waits for it to end") {
  staging::InFlight f;
  Digest a = md5("a"), b = md5("b"), c = md5("c");
  std::vector<bool> first1, first2;
  auto claim1 = std::make_unique<staging::InFlight::Claim>(f.claim({a, b}, first1));
  auto claim2 = f.claim({b, c}, first2);
  CHECK(first1 == std::vector<bool>{true, true});
  CHECK(first2 == std::vector<bool>{false, true});  // b is claim1's

  std::atomic<bool> turned{false};
  std::thread waiter([&] {
    claim2.wait_turn(b);
    turned = true;
  });
  std::this_thread::sleep_for(50ms);
  CHECK_FALSE(turned.load());  // still held by claim1
  claim1.reset();              // claim1's transaction ended
  waiter.join();
  CHECK(turned.load());

  std::vector<bool> first3;
  auto claim3 = f.claim({a}, first3);
  CHECK(first3 == std::vector<bool>{true});  // a was released with claim1
}
