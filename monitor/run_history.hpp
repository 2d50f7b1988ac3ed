// The all-time totals of sync_status rows for a Snapshot (RunHistory in snapshot.hpp says
// why they are read in two parts). Internal to monitor/.
#pragma once

#include <string>

#include "monitor/snapshot.hpp"

namespace ingestd::monitor {

// Inside take()'s transaction: reads the rows newer than the history's horizon (and, when the
// horizon moves, the rows that settled meanwhile), then sets every totals field of `snap`.
// `names` is the configured entities as a text[] literal.
void read_totals(pg::Connection& conn, const std::string& names, RunHistory& history,
                 Snapshot& snap);

}  // namespace ingestd::monitor
