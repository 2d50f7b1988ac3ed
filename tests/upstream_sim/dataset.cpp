#include "dataset.hpp"

#include <algorithm>
#include <chrono>
#include <tuple>

#include <fmt/format.h>

#include "bad_records.hpp"
#include "generate.hpp"
#include "text.hpp"

namespace upstream_sim {

namespace {
constexpr std::array<std::string_view, 5> kRestNames = {"clients", "pianos", "users",
                                                        "timeline_entries", "invoices"};
constexpr std::array<std::string_view, 5> kGraphqlFields = {"allClients", "allPianos", "allUsers",
                                                            "allTimelineEntries", "allInvoices"};
constexpr Micros kSecond = 1'000'000;

std::size_t slot(Entity e) {
  return static_cast<std::size_t>(e);
}

bool after_cursor(const Record& r, const Key& k) {
  return std::tie(k.updated_at, k.id) < std::tie(r.updated_at, r.id);
}
bool by_key(const Record& a, const Record& b) {
  return std::tie(a.updated_at, a.id) < std::tie(b.updated_at, b.id);
}
}  // namespace

std::string_view rest_name(Entity e) {
  return kRestNames[slot(e)];
}
std::string_view graphql_field(Entity e) {
  return kGraphqlFields[slot(e)];
}

std::optional<Entity> entity_named(std::string_view rest) {
  for (Entity e : kEntities)
    if (rest_name(e) == rest) return e;
  return std::nullopt;
}

// ---- Time ----------------------------------------------------------------------------------

Micros data_epoch() {
  using namespace std::chrono;
  return duration_cast<microseconds>(sys_days{year{2026} / November / 1}.time_since_epoch())
      .count();
}

std::string format_time(Micros t) {
  using namespace std::chrono;
  sys_time<microseconds> tp{microseconds{t}};
  auto day = floor<days>(tp);
  year_month_day ymd{day};
  hh_mm_ss hms{floor<milliseconds>(tp - day)};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                     hms.hours().count(), hms.minutes().count(), hms.seconds().count(),
                     hms.subseconds().count());
}

std::optional<Micros> parse_time(std::string_view s) {
  auto num = [&](std::size_t pos, std::size_t n) -> std::optional<int> {
    if (pos + n > s.size()) return std::nullopt;
    auto v = parse_int(s.substr(pos, n));
    if (!v || s[pos] == '-' || s[pos] == '+') return std::nullopt;
    return static_cast<int>(*v);
  };
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
      s[13] != ':' || s[16] != ':')
    return std::nullopt;
  auto y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2),
       sec = num(17, 2);
  if (!y || !mo || !d || !h || !mi || !sec || *h > 23 || *mi > 59 || *sec > 59) return std::nullopt;
  using namespace std::chrono;
  year_month_day ymd{year{*y}, month{static_cast<unsigned>(*mo)}, day{static_cast<unsigned>(*d)}};
  if (!ymd.ok()) return std::nullopt;

  std::size_t pos = 19;
  Micros frac = 0;
  if (s[pos] == '.') {
    std::size_t digits = 0;
    Micros scale = 100'000;
    for (++pos; pos < s.size() && s[pos] >= '0' && s[pos] <= '9'; ++pos, ++digits) {
      frac += (s[pos] - '0') * scale;  // digits past microseconds are dropped
      scale /= 10;
    }
    if (digits == 0) return std::nullopt;
  }
  Micros offset = 0;
  std::string_view zone = s.substr(std::min(pos, s.size()));
  if (zone == "Z" || zone == "z") {
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    auto oh = num(pos + 1, 2), om = num(pos + 4, 2);
    if (!oh || !om || *oh > 23 || *om > 59) return std::nullopt;
    offset = (*oh * 3600 + *om * 60) * kSecond * (zone[0] == '-' ? -1 : 1);
  } else {
    return std::nullopt;
  }
  Micros midnight = duration_cast<microseconds>(sys_days{ymd}.time_since_epoch()).count();
  return midnight + ((*h * 60 + *mi) * 60 + *sec) * kSecond + frac - offset;
}

std::string to_json(const Record& r) {
  if (!r.bad.empty()) return bad::render(r);
  std::string out = "{\"id\":" + json_quote(r.id);
  for (const auto& f : r.fields) {
    out += ',';
    out += json_quote(f.name);
    out += ':';
    out += f.json;
  }
  out += ",\"updatedAt\":" + json_quote(format_time(r.updated_at)) + '}';
  return out;
}

// ---- Dataset -------------------------------------------------------------------------------

Dataset::Dataset(std::uint64_t seed, int size, double bad_percent,
                 const std::vector<std::string>& bad_kinds)
    : seed_(seed), records_(gen::generate(seed, size)) {
  gen::mark_bad(seed, records_, bad_percent, bad_kinds);
  for (Entity e : kEntities) {
    next_index_[slot(e)] = static_cast<int>(records(e).size());
    resort(e);
  }
}

std::vector<Record>& Dataset::records(Entity e) {
  return records_[slot(e)];
}
const std::vector<Record>& Dataset::records(Entity e) const {
  return records_[slot(e)];
}

void Dataset::resort(Entity e) {
  std::sort(records(e).begin(), records(e).end(), by_key);
}

Micros Dataset::global_max() const {
  Micros m = data_epoch() - 90 * 24 * 3600 * kSecond;
  for (const auto& rs : records_)
    if (!rs.empty()) m = std::max(m, rs.back().updated_at);
  return m;
}

// The filter is a contiguous range of the sorted listing: binary search finds both ends.
std::pair<Dataset::Iter, Dataset::Iter> Dataset::range(Entity e, const Filter& f) const {
  const auto& rs = records(e);
  auto first = rs.begin(), last = rs.end();
  if (f.since)
    first =
        std::partition_point(first, last, [&](const Record& r) { return r.updated_at < *f.since; });
  if (f.until)
    last =
        std::partition_point(first, last, [&](const Record& r) { return r.updated_at < *f.until; });
  return {first, last};
}

Slice Dataset::after_key(Entity e, const Filter& f, const std::optional<Key>& after,
                         std::size_t limit) const {
  auto [first, last] = range(e, f);
  // Resuming strictly after the cursor's key, not at an index, is what keeps a walk correct
  // while records move: whatever changed since the last page is simply at a later position.
  if (after)
    first = std::partition_point(first, last,
                                 [&](const Record& r) { return !after_cursor(r, *after); });
  Slice s;
  for (; first != last && s.records.size() < limit; ++first) s.records.push_back(&*first);
  s.more = first != last;
  return s;
}

Slice Dataset::at_offset(Entity e, const Filter& f, std::size_t offset, std::size_t limit) const {
  auto [first, last] = range(e, f);
  Slice s;
  s.total = static_cast<std::size_t>(last - first);
  for (auto i = std::min(offset, s.total); i < s.total && s.records.size() < limit; ++i)
    s.records.push_back(&first[static_cast<std::ptrdiff_t>(i)]);
  s.more = offset + s.records.size() < s.total;
  return s;
}

std::vector<std::string> Dataset::update_oldest(Entity e, int count) {
  auto& rs = records(e);
  Micros base = global_max();
  std::vector<std::string> ids;
  // rs is sorted, so the oldest are at the front; re-sorting afterwards moves them to the end.
  for (std::size_t i = 0; i < rs.size() && ids.size() < static_cast<std::size_t>(count); ++i) {
    rs[i].updated_at = base + static_cast<Micros>(ids.size() + 1) * kSecond;
    gen::touch(seed_, e, rs[i], ++revision_);
    ++rs[i].revisions;
    ids.push_back(rs[i].id);
  }
  resort(e);
  return ids;
}

std::vector<std::string> Dataset::add(Entity e, int count) {
  Micros base = global_max();
  std::vector<std::string> ids;
  for (int k = 0; k < count; ++k) {
    Micros t = base + (k + 1) * kSecond;
    Record r = gen::added(seed_, e, next_index_[slot(e)]++, t, records_);
    ids.push_back(r.id);
    records(e).push_back(std::move(r));  // t is past every record: the order still holds
  }
  return ids;
}

std::vector<std::string> Dataset::remove_oldest(Entity e, int count) {
  auto& rs = records(e);
  auto n = std::min(rs.size(), static_cast<std::size_t>(std::max(count, 0)));
  std::vector<std::string> ids;
  for (std::size_t i = 0; i < n; ++i) ids.push_back(rs[i].id);
  rs.erase(rs.begin(), rs.begin() + static_cast<std::ptrdiff_t>(n));
  return ids;
}

std::vector<std::string> Dataset::remove_ids(Entity e, const std::vector<std::string>& ids) {
  auto& rs = records(e);
  std::vector<std::string> removed;
  std::erase_if(rs, [&](const Record& r) {
    if (std::find(ids.begin(), ids.end(), r.id) == ids.end()) return false;
    removed.push_back(r.id);
    return true;
  });
  return removed;
}

std::string Dataset::update_at(Entity e, std::size_t pos) {
  auto& rs = records(e);
  if (rs.empty()) return "";
  auto it = rs.begin() + static_cast<std::ptrdiff_t>(pos % rs.size());
  it->updated_at = global_max() + kSecond;
  gen::touch(seed_, e, *it, ++revision_);
  ++it->revisions;
  std::rotate(it, it + 1, rs.end());  // its new time is past every record: the end of the order
  return rs.back().id;
}

std::string Dataset::remove_at(Entity e, std::size_t pos) {
  auto& rs = records(e);
  // Bad records stay: a test counts them, and a deleted duplicate_id record would leave its
  // twin's mirror with content no listing shows any more (newer wins: it is kept).
  std::size_t start = rs.empty() ? 0 : pos % rs.size(), k = 0;
  while (k < rs.size() && !rs[(start + k) % rs.size()].bad.empty()) ++k;
  if (k == rs.size()) return "";
  auto it = rs.begin() + static_cast<std::ptrdiff_t>((start + k) % rs.size());
  std::string id = it->id;
  rs.erase(it);
  return id;
}

std::string Dataset::dump() const {
  std::string out;
  for (Entity e : kEntities) {
    for (const auto& r : records(e)) {
      out += fmt::format(R"({{"entity":"{}","id":)", rest_name(e));
      if (r.bad.empty()) {
        out += json_quote(r.id);
        out += fmt::format(R"(,"revisions":{},"record":)", r.revisions);
        out += to_json(r);
      } else {
        auto shown = bad::shown_id(r);
        out += shown.empty() ? "null" : json_quote(shown);
        out += ",\"bad\":" + json_quote(r.bad);
      }
      out += "}\n";
    }
  }
  return out;
}

std::size_t Dataset::total() const {
  std::size_t n = 0;
  for (const auto& rs : records_) n += rs.size();
  return n;
}

std::vector<std::string> Dataset::ids(Entity e) const {
  std::vector<std::string> out;
  for (const auto& r : records(e)) out.push_back(r.id);
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<Micros> Dataset::max_updated_at(Entity e) const {
  if (records(e).empty()) return std::nullopt;
  return records(e).back().updated_at;
}

std::size_t Dataset::count(Entity e) const {
  return records(e).size();
}

}  // namespace upstream_sim
