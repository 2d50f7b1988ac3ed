#include "core/failpoint.hpp"

#include <csignal>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

namespace ingestd {
namespace {
struct Points {
  std::map<std::string, long, std::less<>> remaining;  // name -> hits left before firing
  bool any = false;
};

Points& points() {
  static Points p = [] {
    Points r;
    const char* env = std::getenv("INGESTD_FAILPOINTS");
    if (!env) return r;
    std::string_view spec(env);
    while (!spec.empty()) {
      auto comma = spec.find(',');
      std::string_view item = spec.substr(0, comma);
      spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
      if (item.empty()) continue;
      long nth = 1;
      if (auto colon = item.find(':'); colon != std::string_view::npos) {
        nth = std::strtol(std::string(item.substr(colon + 1)).c_str(), nullptr, 10);
        item = item.substr(0, colon);
      }
      r.remaining[std::string(item)] = nth < 1 ? 1 : nth;
      r.any = true;
    }
    return r;
  }();
  return p;
}
std::mutex mu;
}  // namespace

void failpoint(std::string_view name) {
  auto& p = points();
  if (!p.any) return;
  std::lock_guard lock(mu);
  auto it = p.remaining.find(name);
  if (it == p.remaining.end()) return;
  if (--it->second == 0) std::raise(SIGKILL);
}

}  // namespace ingestd
