// Target: the configuration loader (core/config.cpp, core/config_keys.cpp): YAML text becomes a
// validated config or a list of errors, never a crash, an exception or a hang. A config that
// loads is also rendered (check-config prints it) and ordered for the reconciler.
#include <cstdlib>
#include <exception>

#include "core/config.hpp"
#include "tests/fuzz/support.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // ${NAME} in a value reads the environment: give the seeds' names a value.
  ::setenv("INGESTD_DATABASE_URL", "postgresql://ingestd:pw@127.0.0.1/ingestd", 1);
  ::setenv("INGESTD_UPSTREAM_TOKEN", "fuzz-token", 1);
  ::setenv("INGESTD_ALERT_WEBHOOK", "", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ingestd;
  config::LoadResult r;
  try {
    r = config::load_string(fuzz::as_text(data, size), "fuzz.yaml");
  } catch (const std::exception& e) {
    fuzz::violated(std::string("load_string threw instead of reporting an error: ") + e.what());
  }
  if (r.config.has_value() == !r.errors.empty())
    fuzz::violated("a load must give either a config or errors");
  if (!r.config) return 0;
  (void)config::render_effective(*r.config);
  auto ordered = r.config->reconciled_in_order();
  std::size_t with_table = 0;
  for (const auto& e : r.config->entities) with_table += !e.table.name.empty();
  if (ordered.size() != with_table)
    fuzz::violated("reconciled_in_order lost an entity (a reference cycle got through)");
  return 0;
}
