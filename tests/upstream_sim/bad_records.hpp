// --bad-records PERCENT: a share of the initial records is rendered broken, each in one of the
// ways a real upstream breaks a record, so a test can check that every one ends applied,
// skipped with a reason or quarantined, and that no stage crashes. Which records, and how, is
// a pure function of (seed, entity, index) like the rest of the data (generate.cpp marks them).
#pragma once

#include <array>
#include <string>
#include <string_view>

#include "dataset.hpp"

namespace upstream_sim::bad {

// Each kind, and what a mirror should make of it:
//   wrong_type    the first field is an object where a string is expected      skipped
//   bad_time      updatedAt is a string that is no time                        skipped
//   huge_string   the first field is 1 MiB of text                            applied
//   deep_nesting  an extra field nested kDepth arrays deep                     applied or skipped
//   invalid_utf8  the first field holds bytes that are not UTF-8               quarantined or
//   skipped nul_char      the first field holds \u0000 (valid JSON, not valid jsonb)   skipped
//   huge_number   an extra field 1e999999 (beyond Postgres' numeric)           skipped
//   sql_string    the first field looks like SQL injection                     applied, verbatim
//   missing_id    no "id" at all                                               skipped
//   duplicate_id  shows another record's id, with different content           applied or superseded
inline constexpr std::array<std::string_view, 10> kKinds = {
    "wrong_type", "bad_time",    "huge_string", "deep_nesting", "invalid_utf8",
    "nul_char",   "huge_number", "sql_string",  "missing_id",   "duplicate_id"};
inline constexpr int kDepth = 2000;

// The id a bad record shows in listings ("" for missing_id).
[[nodiscard]] std::string shown_id(const Record& r);
// The record's broken JSON text (r.bad names the kind).
[[nodiscard]] std::string render(const Record& r);

}  // namespace upstream_sim::bad
