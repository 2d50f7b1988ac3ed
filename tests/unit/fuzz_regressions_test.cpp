// Protects the fixes for what the fuzz targets (tests/fuzz/, docs/FUZZING.md) found: upstream
// bodies with a broken structure are bad responses (no crash, nothing spooled the stager cannot
// read), a bad record id spoils only its record, times outside what the clock type holds are
// refused, and the config loader reports odd keys, huge durations and unreadable secret files
// as errors instead of throwing. The inputs are the fuzzers' (minimized) findings.
#include <doctest/doctest.h>

#include <pthread.h>
#include <sys/stat.h>

#include <fstream>
#include <string>
#include <thread>

#include "core/config.hpp"
#include "core/files.hpp"
#include "core/spool.hpp"
#include "core/time.hpp"
#include "fetcher/response.hpp"
#include "tests/support/support.hpp"

using namespace ingestd;

namespace {

bool has_error(const config::LoadResult& r, const std::string& needle) {
  for (const auto& e : r.errors)
    if (e.find(needle) != std::string::npos) return true;
  return false;
}

const char* kBase = R"(database: {url: "postgresql://u@127.0.0.1/db"}
spool: {dir: /tmp/s}
sources:
  s:
    base_url: http://127.0.0.1:9
    entities:
      e:
        rest: {path: /e}
)";

// The records a REST body gives, or the BadResponse message.
std::string read_rest(std::string_view body) {
  fetcher::ResponseReader reader("", "updatedAt", false);
  try {
    return std::to_string(reader.read(body).records.size()) + " records";
  } catch (const fetcher::BadResponse& e) {
    return std::string("bad: ") + e.what();
  }
}

}  // namespace

TEST_CASE("fuzz: a body whose structure breaks after the errors probe is a bad response") {
  // simdjson abandons a document at a structural error; rewind() then dereferenced a null
  // parser (SIGSEGV) instead of reporting the body as not JSON.
  CHECK(read_rest(R"({"a":1} x)").rfind("bad: not JSON", 0) == 0);
  CHECK(read_rest(R"({"d"taa:{"allTimelineEntries":[]}})").rfind("bad: not JSON", 0) == 0);
  fetcher::ResponseReader relay("data.allClients.edges[].node", "updatedAt", true);
  CHECK_THROWS_AS((void)relay.read(R"({"data":{"a|lClients":{"pageIn9.344Z"}}":{"x":1}})"),
                  fetcher::BadResponse);
}

TEST_CASE("fuzz: a record with a broken structure fails the page in the fetcher") {
  // The fetcher skipped what it did not read; the stager reads other fields (the id) and then
  // failed on the spooled page. Each record's structure is now checked before it is spooled.
  CHECK(read_rest(R"([{"id":"a","updatedAt":"2026-01-01T00:00:00Z"},{"id":S"a"}])")
            .rfind("bad: not JSON: a record", 0) == 0);
  CHECK(read_rest(R"([{"":"3":}}])").rfind("bad: not JSON", 0) == 0);
  CHECK(read_rest(R"([{"updatedAt":"2026-01-01T00:00:00Z","a":1 "b","id":1}])").rfind("bad: ", 0) ==
        0);
  // Deeper than any nesting the readers accept: refused, not a stack overflow.
  CHECK(
      read_rest("[" + std::string(20000, '[') + std::string(20000, ']') + "]").rfind("bad: ", 0) ==
      0);
  // Not stricter than Postgres: numbers simdjson cannot hold and bad escapes still pass.
  CHECK(read_rest(R"([{"id":1,"n":123456789012345678901234567890,"x":1e400,"s":"\q"},[1,[2]]])") ==
        "2 records");
}

// Protects the iterative structure check (fetcher/response.cpp, check_open): a record nested
// as deep as the parser accepts is read on a thread whose stack is far smaller than what a
// recursive check needed under ASan (tests/run.sh no longer raises `ulimit -s`), and a break
// deep inside a record, or after a deep container closes, is still found.
TEST_CASE("fuzz: the record structure check needs no deep stack and finds deep breaks") {
  auto nested = [](std::size_t depth, std::string_view inner) {
    std::string r = "[{\"updatedAt\":\"2026-01-01T00:00:00Z\",\"a\":";
    for (std::size_t i = 0; i < depth; ++i) r += i % 2 ? "[" : "{\"k\":";
    r += inner;
    for (std::size_t i = depth; i-- > 0;) r += i % 2 ? "]" : "}";
    return r + "}]";
  };
  std::string deep_ok, deep_broken, after_deep;
  auto check = [&] {
    deep_ok = read_rest(nested(spool::kMaxDepth - 8, "1"));
    deep_broken = read_rest(nested(100, "{\"x\" 1}"));
    after_deep = read_rest(nested(100, "1").insert(2, "\"b\":[1,,2],"));
  };
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t thread;
  REQUIRE(pthread_create(
              &thread, &attr,
              [](void* f) -> void* {
                (*static_cast<decltype(check)*>(f))();
                return nullptr;
              },
              &check) == 0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
  CHECK(deep_ok == "1 records");
  CHECK(deep_broken.rfind("bad: not JSON", 0) == 0);
  CHECK(after_deep.rfind("bad: not JSON", 0) == 0);
}

TEST_CASE("fuzz: a bad id value flags its record and the rest of the page is read") {
  // PageReader::next threw for `"id": S` or a bad escape, and the stager did not expect a
  // throw after the envelope: the entity's batch failed on every turn.
  simdjson::ondemand::parser parser;
  spool::PageReader reader(
      parser, R"({"ingestd_spool":1,"entity":"e","fetched_at":"2026-11-26T11:06:34Z","records":[)"
              R"({"id":S"a"},{"id":"\q"},{"id":"ok"}]})");
  spool::Record rec;
  std::vector<std::string> id{"id"};
  REQUIRE(reader.next(rec, id));
  CHECK(rec.invalid_reason.rfind("id field 'id' is not valid JSON", 0) == 0);
  REQUIRE(reader.next(rec, id));
  CHECK(rec.invalid_reason.rfind("id field 'id' is not valid JSON", 0) == 0);
  REQUIRE(reader.next(rec, id));
  CHECK(rec.external_id == "ok");
  CHECK_FALSE(reader.next(rec, id));
}

TEST_CASE("fuzz: a broken record is a FormatError from next - the stager quarantines the file") {
  simdjson::ondemand::parser parser;
  spool::PageReader reader(
      parser, R"({"ingestd_spool":1,"entity":"e","fetched_at":"2026-11-26T11:06:34Z","records":[)"
              R"({"a":123,5678901234567890123,"id":1},{"id":1e3}]})");
  spool::Record rec;
  CHECK_THROWS_AS((void)reader.next(rec, {"id"}), spool::FormatError);
}

TEST_CASE("fuzz: times beyond what SysTime holds are refused - not overflowed") {
  // 64-bit nanoseconds: 1677-09-21 to 2262-04-11. Beyond, seconds -> nanoseconds overflowed
  // (UBSan) and an updatedAt of 9999-12-31 became a watermark anywhere in time.
  CHECK_FALSE(parse_rfc3339("9999-12-31T23:59:59Z"));
  CHECK_FALSE(parse_rfc3339("0001-01-01T00:00:00Z"));
  CHECK_FALSE(parse_rfc3339("2262-04-12T00:00:00Z"));
  auto late = parse_rfc3339("2262-01-01T00:00:00.999999Z");
  REQUIRE(late);
  CHECK(format_rfc3339(*late) == "2262-01-01T00:00:00.999999Z");
  auto early = parse_rfc3339("1678-01-01T00:00:00Z");
  REQUIRE(early);
  CHECK(format_rfc3339(*early) == "1678-01-01T00:00:00.000000Z");
}

TEST_CASE("fuzz: a key that is a list or null is a config error - not an exception") {
  config::LoadResult r;
  REQUIRE_NOTHROW(r = config::load_string("? [a, b]\n: c\ndatabase: {url: x}\n", "k.yaml"));
  CHECK(has_error(r, "k.yaml:1: a key must be a name"));
  REQUIRE_NOTHROW(r = config::load_string("database: {~: x}\n", "k.yaml"));
  CHECK(has_error(r, "database: a key must be a name"));
}

TEST_CASE("fuzz: a duration beyond 64-bit milliseconds is out of range - not overflowed") {
  CHECK(config::parse_duration("999999999999d") == config::Duration::max());
  CHECK(config::parse_duration("106751991167d1d") == config::Duration::max());
  CHECK(config::parse_duration("106751991167d") ==
        config::Duration(std::int64_t{106751991167} * 86'400'000));
  auto r = config::load_string(std::string(kBase) + "        overlap: 106751991167d1d\n", "d.yaml");
  CHECK(has_error(r, "d.yaml:9: sources.s.entities.e.overlap: 106751991167d1d is out of range"));
}

TEST_CASE("fuzz: a secret file that is a directory or a device is an error - not an abort") {
  // read_file trusted tellg(): a directory gave a huge size (bad_alloc), a pipe gave -1
  // (length_error); both aborted check-config. /dev/zero would never end.
  CHECK_FALSE(read_file("/"));
  CHECK_FALSE(read_file("/dev/zero"));
  auto r = config::load_string(std::string(kBase) + "    auth: {bearer_token_file: /}\n", "f.yaml");
  CHECK(has_error(r, "cannot read the file '/'"));
}

TEST_CASE("fuzz: read_file reads a pipe to its end") {
  // A pipe has no size: `ingestd check-config -c <(envsubst < ingestd.yaml)` works.
  test::TempDir dir;
  auto fifo = dir.path() / "pipe";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::string big(200'000, 'x');
  std::thread writer([&] { std::ofstream(fifo) << big; });
  auto bytes = read_file(fifo);
  writer.join();
  REQUIRE(bytes);
  CHECK(*bytes == big);
}

TEST_CASE("fuzz: next_position per pagination style (the seam the fuzz targets call)") {
  fetcher::Page page;
  page.records = {"{}", "{}"};
  page.has_next = true;
  page.end_cursor = "c2";
  auto relay = fetcher::next_position("relay", page, "", 100);
  CHECK(relay.more);
  CHECK(relay.cursor == "c2");
  page.end_cursor.clear();  // null on an empty page: the run keeps its cursor
  CHECK_FALSE(fetcher::next_position("relay", page, "", 100).cursor);
  CHECK(fetcher::next_position("page", page, "", 2).more);
  CHECK_FALSE(fetcher::next_position("offset", page, "", 3).more);
  CHECK_FALSE(fetcher::next_position("none", page, "", 1).more);
  auto link = fetcher::next_position(
      "next_link", page, R"(<https://x/p?page=1>; rel="prev", </p?page=3>; rel=next)", 2);
  CHECK(link.more);
  CHECK(link.cursor == "/p?page=3");
  auto last = fetcher::next_position("next_link", page, R"(<https://x/p?page=1>; rel="first")", 2);
  CHECK_FALSE(last.more);
  CHECK(last.cursor == "");
  CHECK(fetcher::next_link("<a>; rel=\"next\"<") == "a");
  CHECK(fetcher::next_link("<unclosed; rel=next") == "");
  // rel is matched as a relation name, not a substring: "nextpage" or a title is not next;
  // a quoted list, upper case and other parameters around it are.
  CHECK(fetcher::next_link("<a>; rel=nextpage") == "");
  CHECK(fetcher::next_link(R"(<a>; rel="prefetch"; title="next")") == "");
  CHECK(fetcher::next_link(R"(<a>; rel="prev", <b>; title="x"; REL="last Next")") == "b");
  CHECK(fetcher::next_link(R"(<a>; rel="next-page", <b> ; rel = next ; type="json")") == "b");
}
