// `ingestd placeholders`: the placeholder rows still waiting for their real record, with the
// rows that reference them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ingestd {
namespace config {
struct Config;
}
namespace pg {
class Connection;
}
}  // namespace ingestd

namespace ingestd::reconciler {

struct Placeholder {
  std::string entity;
  std::string id;
  std::string created_at;
  struct Reference {
    std::string from;  // "timeline_entries.piano_id"
    std::int64_t rows = 0;
    std::string example;  // one referencing id
  };
  std::vector<Reference> referenced_by;
};

struct PlaceholderReport {
  std::vector<Placeholder> rows;  // oldest first, at most `limit` per entity
  std::vector<std::pair<std::string, std::int64_t>> open_per_entity;
};

// One pass over each referencing table (no index on reference columns is assumed).
PlaceholderReport open_placeholders(pg::Connection& conn, const config::Config& config,
                                    const std::string& only_entity, std::int64_t limit);

}  // namespace ingestd::reconciler
