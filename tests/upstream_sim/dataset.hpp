// The simulator's data: five entities generated deterministically from (seed, size), kept
// sorted by (updatedAt, id) -- the order every listing uses, which is what makes pagination
// stable -- and changed only through the control API's mutations.
//
// Not thread-safe: the App holds one mutex around every use.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace upstream_sim {

enum class Entity { clients, pianos, users, timeline_entries, invoices };
inline constexpr std::array<Entity, 5> kEntities = {Entity::clients, Entity::pianos, Entity::users,
                                                    Entity::timeline_entries, Entity::invoices};

[[nodiscard]] std::string_view rest_name(Entity e);      // "timeline_entries"
[[nodiscard]] std::string_view graphql_field(Entity e);  // "allTimelineEntries"
[[nodiscard]] std::optional<Entity> entity_named(std::string_view rest);

// Microseconds since the Unix epoch, UTC. Records carry milliseconds, but filters may come
// with microseconds (ingestd writes them) and must compare exactly.
using Micros = std::int64_t;
// "2026-11-20T10:15:30.123Z": always UTC, always milliseconds, like the real upstream.
[[nodiscard]] std::string format_time(Micros t);
// RFC 3339 with any fraction and Z or +HH:MM; nullopt for anything else. The simulator has
// its own parser on purpose: it stands in for a system that shares no code with ingestd.
[[nodiscard]] std::optional<Micros> parse_time(std::string_view text);

// The fixed "now" of the generated data: 2026-11-01T00:00:00Z, never the wall clock.
[[nodiscard]] Micros data_epoch();

struct Field {
  std::string name;
  std::string json;  // the value as JSON text: "\"Anna\"", "129.50", {"id":"cln_..."}
};

struct Record {
  std::string id;
  Micros updated_at = 0;
  std::vector<Field> fields;  // everything but id and updatedAt, in output order
  // --bad-records: how this record is broken when rendered (bad_records.hpp), empty when it
  // is not; `twin` is the id a "duplicate_id" record shows instead of its own.
  std::string bad;
  std::string twin;
  int revisions =
      0;  // updates since it was generated or added: a mirror's version is at most 1 + this
};

// {"id":..., <fields>..., "updatedAt":...}: the same text in GraphQL and REST. A bad record
// is rendered broken in its own way (bad_records.cpp).
[[nodiscard]] std::string to_json(const Record& r);

// since <= updatedAt < until; either bound may be absent.
struct Filter {
  std::optional<Micros> since;
  std::optional<Micros> until;
};

// A position in a listing, for Relay cursors: strictly after (updated_at, id).
struct Key {
  Micros updated_at = 0;
  std::string id;
};

struct Slice {
  std::vector<const Record*> records;  // valid until the next mutation
  bool more = false;                   // further records match after the last one
  std::size_t total = 0;               // records matching the filter (at_offset only)
};

class Dataset {
 public:
  // `bad_percent`: share of the initial records rendered broken (--bad-records), each in one
  // of `bad_kinds` (empty: every kind of bad::kKinds).
  Dataset(std::uint64_t seed, int size, double bad_percent = 0,
          const std::vector<std::string>& bad_kinds = {});

  // Matching records strictly after `after` (from the start without it), at most `limit`.
  [[nodiscard]] Slice after_key(Entity e, const Filter& f, const std::optional<Key>& after,
                                std::size_t limit) const;
  // Matching records from position `offset` of the filtered listing, at most `limit`.
  [[nodiscard]] Slice at_offset(Entity e, const Filter& f, std::size_t offset,
                                std::size_t limit) const;

  // Mutations return the ids they touched. New updatedAt values start one second after the
  // largest updatedAt of the whole data set, so changed records move to the end of listings.
  std::vector<std::string> update_oldest(Entity e, int count);
  std::vector<std::string> add(Entity e, int count);
  std::vector<std::string> remove_oldest(Entity e, int count);
  std::vector<std::string> remove_ids(Entity e, const std::vector<std::string>& ids);
  // Churn (one record at a time, `pos` in listing order, taken modulo the count): update
  // moves the record to the end with one field changed, remove deletes it (or the next one
  // that is not a --bad-records record). Both return its id, or "" when there is none.
  std::string update_at(Entity e, std::size_t pos);
  std::string remove_at(Entity e, std::size_t pos);

  // Every record of every entity as JSON lines, one per record:
  //   {"entity":"clients","id":"cln_...","revisions":0,"record":{...}}   what a listing shows
  //   {"entity":"clients","id":"cln_...","bad":"missing_id"}         a --bad-records record
  // (a bad record's "id" is the id it shows, null when it shows none; its text is left out,
  // as it may not even be valid UTF-8). The truth a test compares a mirror against.
  [[nodiscard]] std::string dump() const;

  [[nodiscard]] std::vector<std::string> ids(Entity e) const;  // sorted by id
  [[nodiscard]] std::optional<Micros> max_updated_at(Entity e) const;
  [[nodiscard]] std::size_t count(Entity e) const;
  [[nodiscard]] std::size_t total() const;  // all entities

 private:
  [[nodiscard]] std::vector<Record>& records(Entity e);
  [[nodiscard]] const std::vector<Record>& records(Entity e) const;
  using Iter = std::vector<Record>::const_iterator;
  [[nodiscard]] std::pair<Iter, Iter> range(Entity e, const Filter& f) const;
  [[nodiscard]] Micros global_max() const;
  void resort(Entity e);

  std::uint64_t seed_;
  std::array<std::vector<Record>, kEntities.size()> records_;  // each sorted by (updatedAt, id)
  std::array<int, kEntities.size()> next_index_{};             // ids of added records never repeat
  int revision_ = 0;  // makes each update's new value distinct
};

}  // namespace upstream_sim
