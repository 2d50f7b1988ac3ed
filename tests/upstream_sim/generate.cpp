#include "generate.hpp"

#include <algorithm>
#include <string_view>

#include <fmt/format.h>

#include "bad_records.hpp"
#include "text.hpp"

namespace upstream_sim::gen {
namespace {

// ---- Deterministic randomness: a hash of (seed, entity, index, purpose). -------------------
// A hash instead of a random stream means one record's values never depend on how many were
// drawn before it, so adding a field or an entity leaves every other value unchanged.

enum Salt : std::uint64_t {
  kId = 1,
  kTime,
  kRound,
  kName,
  kPick,
  kOrphan,
  kLate,
  kUser,
  kText,
  kFake,
  kEdit,
  kBad,
  kBadKind
};

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finalizer
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::uint64_t hash(std::uint64_t seed, Entity e, std::uint64_t index, std::uint64_t salt) {
  return mix(mix(mix(mix(seed) ^ static_cast<std::uint64_t>(e)) ^ index) ^ salt);
}

template <std::size_t N>
std::string_view pick(const std::array<std::string_view, N>& list, std::uint64_t h) {
  return list[h % N];
}

// ---- Ids: prefix + 16 base62 characters, like the real upstream's. --------------------------

std::string_view prefix(Entity e) {
  static constexpr std::array<std::string_view, 5> prefixes = {"cln_", "pno_", "usr_", "tme_",
                                                               "inv_"};
  return prefixes[static_cast<std::size_t>(e)];
}

std::string make_id(std::string_view pre, std::uint64_t h) {
  static constexpr std::string_view kBase62 =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  std::string id{pre};
  for (int k = 0; k < 16; ++k) {
    h = mix(h);
    id += kBase62[h % 62];
  }
  return id;
}

std::string id_of(std::uint64_t seed, Entity e, int index) {
  return make_id(prefix(e), hash(seed, e, static_cast<std::uint64_t>(index), kId));
}

std::string ref_to(std::string_view id) {
  return fmt::format(R"({{"id":{}}})", json_quote(id));
}

// ---- Times ---------------------------------------------------------------------------------

constexpr Micros kSecond = 1'000'000, kHour = 3600 * kSecond, kDay = 24 * kHour;

// Millisecond precision, uniform in [from, to).
Micros uniform(std::uint64_t h, Micros from, Micros to) {
  return from + static_cast<Micros>(h % static_cast<std::uint64_t>((to - from) / 1000)) * 1000;
}

// Indices 16..19 of every 20 copy index 16's time, and ~15% are whole seconds: runs of equal
// updatedAt that pagination must cut through without losing or repeating a record.
Micros time_of(std::uint64_t seed, Entity e, int index, Micros from, Micros to) {
  if (index % 20 > 16) index -= index % 20 - 16;
  auto i = static_cast<std::uint64_t>(index);
  Micros t = uniform(hash(seed, e, i, kTime), from, to);
  if (hash(seed, e, i, kRound) % 100 < 15) t -= t % kSecond;
  return t;
}

// ---- Texts (UTF-8 on purpose: the fetcher must pass bytes through untouched) ---------------

constexpr std::array<std::string_view, 12> kFirstNames = {"Anna",   "Bernard", "Chloé", "Dmitri",
                                                          "Élodie", "Franz",   "Greta", "Hiroshi",
                                                          "Inès",   "Jürgen",  "Keiko", "Zoë"};
constexpr std::array<std::string_view, 12> kLastNames = {
    "Anderson", "D'Angelo", "Eriksson", "García",  "Lefèvre", "Müller",
    "Nakamura", "O'Brien",  "Rossi",    "Schäfer", "Weiß",    "山田"};
constexpr std::array<std::string_view, 8> kMakes = {"Steinway & Sons", "Yamaha",    "Kawai",
                                                    "Bösendorfer",     "Bechstein", "Blüthner",
                                                    "Fazioli",         "Schimmel"};
constexpr std::array<std::string_view, 8> kModels = {"Model D", "C3X",  "GX-2",  "Imperial 290",
                                                     "B 212",   "F278", "K-300", "U1 \"upright\""};
constexpr std::array<std::string_view, 4> kRoles = {"technician", "technician", "senior technician",
                                                    "apprentice"};
constexpr std::array<std::string_view, 5> kTypes = {"SERVICE", "TUNING", "REPAIR", "NOTE",
                                                    "APPOINTMENT"};
// The escaping torture list: a fetcher that mangles any of these corrupts data.
constexpr std::array<std::string_view, 10> kSummaries = {
    "Tuned to A440",
    "Pitch raise: the owner said it was \"a bit flat\" after the move",
    "Replaced hammer felt (photos in C:\\Pianos\\Hammers\\set2)",
    "Customer asked:\n1. humidity check\n2. quote for new dampers",
    "Régulation complète du mécanisme",
    "Flügel gestimmt, Dämpfer geprüft, Hämmer überarbeitet",
    "日本製のピアノを調律しました",
    "Tab\tseparated import from \"legacy\\system\"",
    "Imported from the old system\x07 with a stray control character",
    "Voicing done; next visit in 6 months"};

std::string str(std::string_view s) {
  return json_quote(s);
}

std::string phone(std::uint64_t h) {
  return str(fmt::format("+49 30 {:04} {:04}", h % 10000, (h / 10000) % 10000));
}

std::string money(std::uint64_t h) {  // a JSON number with exactly two decimals
  std::uint64_t cents = 2000 + h % 250000;
  return fmt::format("{}.{:02}", cents / 100, cents % 100);
}

// ---- Records -------------------------------------------------------------------------------

Record client(std::uint64_t seed, int i, Micros t) {
  auto h = hash(seed, Entity::clients, static_cast<std::uint64_t>(i), kName);
  return {id_of(seed, Entity::clients, i),
          t,
          {{"firstName", str(pick(kFirstNames, h))},
           {"lastName", str(pick(kLastNames, h >> 8))},
           {"email", str(fmt::format("client{:05}@example.com", i))},
           {"phone", phone(h >> 16)}}};
}

Record user(std::uint64_t seed, int i, Micros t) {
  auto h = hash(seed, Entity::users, static_cast<std::uint64_t>(i), kName);
  return {id_of(seed, Entity::users, i),
          t,
          {{"firstName", str(pick(kFirstNames, h >> 4))},
           {"lastName", str(pick(kLastNames, h >> 12))},
           {"email", str(fmt::format("tech{:03}@gazelle.example", i))},
           {"role", str(pick(kRoles, h >> 20))}}};
}

Record piano(std::uint64_t seed, int i, Micros t, std::string client_ref) {
  auto h = hash(seed, Entity::pianos, static_cast<std::uint64_t>(i), kName);
  return {id_of(seed, Entity::pianos, i),
          t,
          {{"make", str(pick(kMakes, h))},
           {"model", str(pick(kModels, h >> 8))},
           {"serialNumber",
            str(fmt::format("{}{:07}", "ABCDEFGH"[(h >> 16) % 8], (h >> 24) % 10'000'000))},
           {"client", std::move(client_ref)}}};
}

Record timeline_entry(std::uint64_t seed, int i, Micros t, std::string piano_ref,
                      std::string user_ref, std::string client_ref) {
  auto h = hash(seed, Entity::timeline_entries, static_cast<std::uint64_t>(i), kText);
  Micros occurred = t - static_cast<Micros>(h % 72) * kHour - 15 * 60 * kSecond;
  return {id_of(seed, Entity::timeline_entries, i),
          t,
          {{"type", str(pick(kTypes, h >> 8))},
           {"occurredAt", str(format_time(occurred))},
           {"summary", str(pick(kSummaries, h >> 16))},
           {"piano", std::move(piano_ref)},
           {"user", std::move(user_ref)},
           {"client", std::move(client_ref)}}};
}

Record invoice(std::uint64_t seed, int i, Micros t, std::string client_ref) {
  auto h = hash(seed, Entity::invoices, static_cast<std::uint64_t>(i), kName);
  Micros issued = t - static_cast<Micros>(h % 10) * kDay - kHour;
  return {id_of(seed, Entity::invoices, i),
          t,
          {{"number", str(fmt::format("INV-{:06}", i + 1))},
           {"total", money(h >> 8)},
           {"currency", str("EUR")},
           {"client", std::move(client_ref)},
           {"issuedAt", str(format_time(issued))}}};
}

const std::string& field(const Record& r, std::string_view name) {
  static const std::string none = "null";
  for (const auto& f : r.fields)
    if (f.name == name) return f.json;
  return none;
}

// Reference to a record picked among those that exist now, or a made-up id when none does.
std::string ref_among(const std::vector<Record>& records, std::uint64_t h, Entity e) {
  if (records.empty()) return ref_to(make_id(prefix(e), h));
  return ref_to(records[h % records.size()].id);
}

std::vector<Record>& of(World& w, Entity e) {
  return w[static_cast<std::size_t>(e)];
}
const std::vector<Record>& of(const World& w, Entity e) {
  return w[static_cast<std::size_t>(e)];
}

// A piano's owner is a pure function of the piano's index, so a timeline entry can name the
// piano's client without looking the piano up.
std::size_t piano_owner(std::uint64_t seed, int piano, std::size_t clients) {
  return hash(seed, Entity::pianos, static_cast<std::uint64_t>(piano), kPick) % clients;
}

// A timeline entry of the initial data set, `w` holding its clients, users and pianos (in
// index order). Where its two kinds of dangling reference come from.
Record initial_entry(std::uint64_t seed, int i, Micros t, const World& w) {
  const auto e = Entity::timeline_entries;
  const auto u = static_cast<std::uint64_t>(i);
  const auto& clients = of(w, Entity::clients);
  const auto& pianos = of(w, Entity::pianos);
  const auto& users = of(w, Entity::users);
  std::string piano_ref, client_ref;
  if (hash(seed, e, u, kOrphan) % 100 < 2) {  // ~2%: a piano that exists nowhere
    piano_ref = ref_to(make_id("pno_", hash(seed, e, u, kFake)));
    client_ref = ref_to(clients[hash(seed, e, u, kPick) % clients.size()].id);
  } else {
    auto p = hash(seed, e, u, kPick) % pianos.size();
    piano_ref = ref_to(pianos[p].id);
    client_ref = ref_to(clients[piano_owner(seed, static_cast<int>(p), clients.size())].id);
  }
  // ~5%: user 0, the late hire, whose record an incremental sync sees only later.
  std::size_t usr =
      hash(seed, e, u, kLate) % 100 < 5 ? 0 : 1 + hash(seed, e, u, kUser) % (users.size() - 1);
  return timeline_entry(seed, i, t, std::move(piano_ref), ref_to(users[usr].id),
                        std::move(client_ref));
}

}  // namespace

World generate(std::uint64_t seed, int size) {
  const Micros end = data_epoch(), start = end - 90 * kDay;
  World w;
  auto& clients = of(w, Entity::clients);
  for (int i = 0; i < size; ++i)
    clients.push_back(client(seed, i, time_of(seed, Entity::clients, i, start, end)));

  // Technicians are on file from the first 20 days; user 0 only since two hours before the
  // epoch, later than every timeline entry (those end at epoch - 2 h).
  for (int i = 0; i < std::max(5, size / 20); ++i) {
    Micros t = i == 0 ? time_of(seed, Entity::users, i, end - 2 * kHour, end - kHour)
                      : time_of(seed, Entity::users, i, start, start + 20 * kDay);
    of(w, Entity::users).push_back(user(seed, i, t));
  }

  for (int i = 0; i < 2 * size; ++i)
    of(w, Entity::pianos)
        .push_back(piano(seed, i, time_of(seed, Entity::pianos, i, start, end),
                         ref_to(clients[piano_owner(seed, i, clients.size())].id)));

  for (int i = 0; i < 5 * size; ++i)
    of(w, Entity::timeline_entries)
        .push_back(initial_entry(
            seed, i, time_of(seed, Entity::timeline_entries, i, start + 20 * kDay, end - 2 * kHour),
            w));

  for (int i = 0; i < size; ++i) {
    auto owner = hash(seed, Entity::invoices, static_cast<std::uint64_t>(i), kPick);
    of(w, Entity::invoices)
        .push_back(invoice(seed, i, time_of(seed, Entity::invoices, i, start, end),
                           ref_to(clients[owner % clients.size()].id)));
  }
  return w;
}

Record added(std::uint64_t seed, Entity e, int index, Micros t, const World& world) {
  auto h = hash(seed, e, static_cast<std::uint64_t>(index), kPick);
  switch (e) {
    case Entity::clients:
      return client(seed, index, t);
    case Entity::users:
      return user(seed, index, t);
    case Entity::pianos:
      return piano(seed, index, t, ref_among(of(world, Entity::clients), h, Entity::clients));
    case Entity::invoices:
      return invoice(seed, index, t, ref_among(of(world, Entity::clients), h, Entity::clients));
    case Entity::timeline_entries: {
      const auto& pianos = of(world, Entity::pianos);
      std::string piano_ref = ref_among(pianos, h, Entity::pianos);
      std::string client_ref = pianos.empty()
                                   ? ref_among(of(world, Entity::clients), h, Entity::clients)
                                   : field(pianos[h % pianos.size()], "client");
      return timeline_entry(seed, index, t, std::move(piano_ref),
                            ref_among(of(world, Entity::users), h >> 16, Entity::users),
                            std::move(client_ref));
    }
  }
  return {};
}

void mark_bad(std::uint64_t seed, World& world, double percent,
              const std::vector<std::string>& kinds) {
  if (percent <= 0) return;
  std::vector<std::string> from = kinds;
  if (from.empty()) from.assign(bad::kKinds.begin(), bad::kKinds.end());
  auto threshold = static_cast<std::uint64_t>(percent * 1000);  // out of 100 000
  for (Entity e : kEntities) {
    auto& rs = of(world, e);
    for (std::size_t i = 0; i < rs.size(); ++i) {
      if (hash(seed, e, i, kBad) % 100'000 >= threshold) continue;
      const std::string& kind = from[hash(seed, e, i, kBadKind) % from.size()];
      if (kind == "duplicate_id") {
        if (i + 1 >= rs.size()) continue;
        rs[i].twin = rs[i + 1].id;
        rs[i].bad = kind;
        ++i;  // the twin stays good
        continue;
      }
      rs[i].bad = kind;
    }
  }
}

void touch(std::uint64_t seed, Entity e, Record& r, int revision) {
  static constexpr std::array<std::string_view, 5> changed = {"phone", "model", "role", "summary",
                                                              "total"};
  std::string_view name = changed[static_cast<std::size_t>(e)];
  for (auto& f : r.fields) {
    if (f.name != name) continue;
    // Draw until the value differs: the lists are short and an update must change something.
    for (std::uint64_t k = 0;; ++k) {
      auto h = hash(seed, e, static_cast<std::uint64_t>(revision) << 8 | k, kEdit);
      std::string v;
      switch (e) {
        case Entity::clients:
          v = phone(h);
          break;
        case Entity::pianos:
          v = str(pick(kModels, h));
          break;
        case Entity::users:
          v = str(pick(kRoles, h));
          break;
        case Entity::timeline_entries:
          v = str(fmt::format("Edited (revision {}): {}", revision, pick(kSummaries, h)));
          break;
        case Entity::invoices:
          v = money(h);
          break;
      }
      if (v != f.json) {
        f.json = std::move(v);
        return;
      }
    }
  }
}

}  // namespace upstream_sim::gen
