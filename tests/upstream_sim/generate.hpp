// How the simulated records look and where their quirks come from. Everything is a pure
// function of (seed, entity, index): the same seed always gives the same ids, texts and times.
// Internal to the data set (dataset.cpp is the only user).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "dataset.hpp"

namespace upstream_sim::gen {

using World = std::array<std::vector<Record>, kEntities.size()>;  // indexed by Entity

// The initial data set, each entity in index order (not yet sorted). Its quirks:
// - updatedAt spread over the 90 days before data_epoch(); ~15% are rounded to the second and
//   indices 16..19 of every 20 share one value, so page boundaries fall inside runs of equal
//   updatedAt and a fetcher must page by (updatedAt, id), not updatedAt alone;
// - technicians are old, except user 0, hired two hours before the epoch: the ~5% of timeline
//   entries that name it arrive before their user in an incremental sync;
// - ~2% of timeline entries name a piano id that exists nowhere;
// - summaries sometimes hold quotes, backslashes, newlines, a control character and non-ASCII.
[[nodiscard]] World generate(std::uint64_t seed, int size);

// A record added later by the control API: index `index`, updatedAt `t`, references picked
// among the records `world` holds now.
[[nodiscard]] Record added(std::uint64_t seed, Entity e, int index, Micros t, const World& world);

// --bad-records: marks ~`percent` % of each entity's records (in index order, before any
// sorting) with one of `kinds` (empty: any of bad::kKinds). A duplicate_id record shows the id of
// the next record, which stays good.
void mark_bad(std::uint64_t seed, World& world, double percent,
              const std::vector<std::string>& kinds);

// Changes one field of `r` (phone, model, role, summary or total) to a new value: the visible
// part of an "update" mutation. `revision` makes each call's value distinct.
void touch(std::uint64_t seed, Entity e, Record& r, int revision);

}  // namespace upstream_sim::gen
