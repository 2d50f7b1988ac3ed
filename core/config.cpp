#include "core/config.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "core/dsn.hpp"
#include "core/files.hpp"
#include "core/log.hpp"

namespace ingestd::config {
namespace {

constexpr std::string_view kFileSuffix = "_file";

struct Value {
  std::string text;
  int line = 0;
};

std::string join(std::string_view a, std::string_view b) {
  return a.empty() ? std::string(b) : fmt::format("{}.{}", a, b);
}

const Key* find_key(std::string_view pattern) {
  for (const auto& k : keys())
    if (k.path == pattern) return &k;
  return nullptr;
}

bool is_prefix_of_some_key(std::string_view pattern) {
  std::string p = std::string(pattern) + ".";
  return std::any_of(keys().begin(), keys().end(),
                     [&](const Key& k) { return k.path.substr(0, p.size()) == p; });
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string suggestion(std::string_view parent_pattern, std::string_view name) {
  std::string best;
  std::size_t best_d = 3;
  std::string p = parent_pattern.empty() ? "" : std::string(parent_pattern) + ".";
  for (const auto& k : keys()) {
    if (k.path.substr(0, p.size()) != p) continue;
    std::string_view rest = k.path.substr(p.size());
    std::string_view child = rest.substr(0, rest.find('.'));
    if (child == "*") continue;
    if (auto d = edit_distance(child, name); d < best_d) {
      best_d = d;
      best = std::string(child);
    }
  }
  return best.empty() ? "" : fmt::format(" (did you mean '{}'?)", best);
}

class Loader {
 public:
  explicit Loader(std::string origin) : origin_(std::move(origin)) {}

  LoadResult run(std::string_view yaml) {
    YAML::Node root;
    try {
      root = YAML::Load(std::string(yaml));
    } catch (const YAML::Exception& e) {
      error(e.mark.line + 1, "", fmt::format("not valid YAML: {}", e.msg));
      return finish();
    }
    if (!root.IsMap()) {
      error(1, "", "the configuration must be a mapping of keys");
      return finish();
    }
    walk(root, "", "");
    fill_defaults_and_check_required();
    return finish();
  }

 private:
  void error(int line, std::string_view path, std::string_view what) {
    if (path.empty())
      errors_.push_back(fmt::format("{}:{}: {}", origin_, line, what));
    else
      errors_.push_back(fmt::format("{}:{}: {}: {}", origin_, line, path, what));
  }

  void walk(const YAML::Node& map, const std::string& path, const std::string& pattern) {
    const Key* self = find_key(pattern);
    bool named_children = self && self->type == Type::map;
    for (const auto& kv : map) {
      int line = kv.first.Mark().line + 1;
      if (!kv.first.IsScalar()) {  // `? [a, b]: c` or `~: c`: as<std::string>() would throw
        error(line, path, "a key must be a name, not a list, a mapping or null");
        continue;
      }
      std::string name = kv.first.as<std::string>();
      std::string child_path = join(path, name);
      std::string child_pattern = named_children ? join(pattern, "*") : join(pattern, name);
      if (named_children) {
        if (!valid_identifier(name) || name.size() > 40) {
          error(line, child_path,
                "names here must be lowercase letters, digits and _, starting with a letter or "
                "_, at most 40 bytes");
          continue;
        }
        instances_[child_pattern].push_back({child_path, line});
      }
      handle(kv.second, child_path, child_pattern, name, line, pattern);
    }
  }

  void handle(const YAML::Node& node, const std::string& path, const std::string& pattern,
              std::string_view name, int line, const std::string& parent_pattern) {
    const Key* key = find_key(pattern);
    bool from_file = false;
    std::string target_path = path;
    if (!key && name.size() > kFileSuffix.size() && name.ends_with(kFileSuffix)) {
      std::string base = pattern.substr(0, pattern.size() - kFileSuffix.size());
      if (const Key* k = find_key(base); k && k->secret) {
        key = k;
        from_file = true;
        target_path = path.substr(0, path.size() - kFileSuffix.size());
      }
    }
    if (!key) {
      if (is_prefix_of_some_key(pattern)) {
        if (!node.IsMap()) {
          error(line, path, "expected a mapping of keys");
          return;
        }
        walk(node, path, pattern);
        return;
      }
      error(line, path, fmt::format("unknown key{}", suggestion(parent_pattern, name)));
      return;
    }
    if (key->type == Type::map) {
      if (!node.IsMap()) {
        error(line, path, "expected a mapping of names");
        return;
      }
      if (node.size() == 0 && key->required) error(line, path, "must not be empty");
      walk(node, path, pattern);
      seen_maps_.insert(path);
      return;
    }
    if (!node.IsScalar()) {
      error(line, path, "expected a single value");
      return;
    }
    if (values_.count(target_path)) {
      error(line, target_path,
            fmt::format("given twice (directly and as {}{})",
                        key->path.substr(key->path.rfind('.') + 1), kFileSuffix));
      return;
    }
    seen_paths_.insert(target_path);  // present, even if invalid: not also "required"
    std::string text = node.as<std::string>();
    auto expanded = expand_env(text, path, line);
    if (!expanded) return;
    text = *expanded;
    if (from_file) {
      auto content = read_file(text);
      if (!content) {
        error(line, path, fmt::format("cannot read the file '{}'", text));
        return;
      }
      text = std::move(*content);
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    }
    if (!check_value(*key, text, target_path, line)) return;
    if (key->secret) log::add_secret(text);
    if (key->type == Type::dsn)
      for (const auto& pw : dsn::passwords(text)) log::add_secret(pw);
    values_[target_path] = {text, line};
  }

  std::optional<std::string> expand_env(const std::string& text, const std::string& path,
                                        int line) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '$' && i + 1 < text.size() && text[i + 1] == '$') {
        out += '$';
        ++i;
      } else if (text[i] == '$' && i + 1 < text.size() && text[i + 1] == '{') {
        auto close = text.find('}', i);
        if (close == std::string::npos) {
          error(line, path, "unterminated ${ in value");
          return std::nullopt;
        }
        std::string var = text.substr(i + 2, close - i - 2);
        const char* v = std::getenv(var.c_str());
        if (!v) {
          error(line, path, fmt::format("environment variable {} is not set", var));
          return std::nullopt;
        }
        out += v;
        i = close;
      } else {
        out += text[i];
      }
    }
    return out;
  }

  bool check_value(const Key& key, const std::string& text, const std::string& path, int line) {
    auto range = [&](std::int64_t v, std::string_view unit) {
      if (key.min == 0 && key.max == 0) return true;
      if (v < key.min || v > key.max) {
        error(line, path,
              fmt::format("{} is out of range [{}{}, {}{}]", text, key.min, unit, key.max, unit));
        return false;
      }
      return true;
    };
    switch (key.type) {
      case Type::integer: {
        char* end = nullptr;
        long long v = std::strtoll(text.c_str(), &end, 10);
        if (text.empty() || *end) {
          error(line, path, fmt::format("'{}' is not an integer", text));
          return false;
        }
        return range(v, "");
      }
      case Type::number: {
        char* end = nullptr;
        double v = std::strtod(text.c_str(), &end);
        if (text.empty() || *end || v != v) {
          error(line, path, fmt::format("'{}' is not a number", text));
          return false;
        }
        if ((key.min != 0 || key.max != 0) &&
            (v < static_cast<double>(key.min) || v > static_cast<double>(key.max))) {
          error(line, path, fmt::format("{} is out of range [{}, {}]", text, key.min, key.max));
          return false;
        }
        return true;
      }
      case Type::duration: {
        auto d = parse_duration(text);
        if (!d) {
          error(line, path,
                fmt::format("'{}' is not a duration (examples: 500ms, 10s, 5m, 2h, 30d)", text));
          return false;
        }
        return range(d->count(), "ms");
      }
      case Type::boolean:
        if (text != "true" && text != "false") {
          error(line, path, fmt::format("'{}' is not true or false", text));
          return false;
        }
        return true;
      case Type::choice: {
        std::string_view c = key.choices;
        while (!c.empty()) {
          auto bar = c.find('|');
          if (c.substr(0, bar) == text) return true;
          c = bar == std::string_view::npos ? std::string_view{} : c.substr(bar + 1);
        }
        error(line, path, fmt::format("'{}' is not one of {}", text, key.choices));
        return false;
      }
      case Type::string:
      case Type::path:
      case Type::dsn:
        if (text.empty()) {
          error(line, path, "must not be empty");
          return false;
        }
        return true;
      case Type::map:
        return true;
    }
    return true;
  }

  // Expands a key pattern into the concrete paths of its existing parents.
  std::vector<std::pair<std::string, int>> parents_of(std::string_view pattern) {
    auto dot = pattern.rfind('.');
    if (dot == std::string_view::npos) return {{"", 1}};
    std::string parent(pattern.substr(0, dot));
    // A fixed parent exists implicitly; a wildcard's instances were recorded by walk().
    if (parent.find('*') == std::string::npos) return {{parent, 1}};
    if (parent.back() != '*') {
      // e.g. "sources.*.entities": the parents are the instances of "sources.*".
      auto star = parent.rfind('*');
      std::string inst_pattern = parent.substr(0, star + 1);
      std::string rest = parent.substr(star + 1);
      std::vector<std::pair<std::string, int>> out;
      for (const auto& [p, l] : instances_[inst_pattern]) out.emplace_back(p + rest, l);
      return out;
    }
    return instances_[parent];
  }

  void fill_defaults_and_check_required() {
    for (const auto& key : keys()) {
      std::string_view leaf = key.path.substr(key.path.rfind('.') + 1);
      for (const auto& [parent, line] : parents_of(key.path)) {
        std::string path = join(parent, leaf);
        if (key.type == Type::map) {
          if (key.required && !seen_maps_.count(path)) error(line, path, "is required");
          continue;
        }
        if (values_.count(path) || seen_paths_.count(path)) continue;
        if (!key.default_value.empty())
          values_[path] = {std::string(key.default_value), 0};
        else if (key.required)
          error(line, path, "is required");
      }
    }
  }

  std::string opt(const std::string& p) const {
    auto it = values_.find(p);
    return it == values_.end() ? std::string() : it->second.text;
  }

  Source build_source(const std::string& name, const std::string& p, int line) {
    Source s;
    s.name = name;
    s.base_url = opt(p + ".base_url");
    while (!s.base_url.empty() && s.base_url.back() == '/') s.base_url.pop_back();
    s.rate_per_second = std::strtod(opt(p + ".rate_limit.per_second").c_str(), nullptr);
    s.rate_burst = std::stoll(opt(p + ".rate_limit.burst"));
    s.timeout = *parse_duration(opt(p + ".timeout"));
    s.retry_max_attempts = std::stoll(opt(p + ".retry.max_attempts"));
    s.retry_initial = *parse_duration(opt(p + ".retry.initial"));
    s.retry_max = *parse_duration(opt(p + ".retry.max"));
    s.tls_verify = opt(p + ".tls_verify") == "true";
    s.pipelining = opt(p + ".pipelining") == "true";
    s.requests_in_flight = std::stoll(opt(p + ".requests_in_flight"));
    if (!s.pipelining && s.requests_in_flight > 1)
      error(line_of(p + ".requests_in_flight", line), p + ".requests_in_flight",
            "needs pipelining: true (the pages after the first are asked ahead)");
    auto& a = s.auth;
    a.bearer_token = opt(p + ".auth.bearer_token");
    a.api_key_header = opt(p + ".auth.api_key_header");
    a.api_key = opt(p + ".auth.api_key");
    a.token_url = opt(p + ".auth.oauth2.token_url");
    a.client_id = opt(p + ".auth.oauth2.client_id");
    a.client_secret = opt(p + ".auth.oauth2.client_secret");
    a.scope = opt(p + ".auth.oauth2.scope");
    int kinds = !a.bearer_token.empty() + !a.api_key.empty() + !a.token_url.empty();
    if (kinds > 1) error(line, p + ".auth", "choose one of bearer_token, api_key, oauth2");
    if (!a.bearer_token.empty()) a.kind = Auth::Kind::bearer;
    if (!a.api_key.empty()) {
      a.kind = Auth::Kind::api_key;
      if (a.api_key_header.empty())
        error(line, p + ".auth.api_key_header", "is required with api_key");
    }
    if (!a.token_url.empty()) {
      a.kind = Auth::Kind::oauth2;
      if (a.client_id.empty())
        error(line, p + ".auth.oauth2.client_id", "is required with token_url");
      if (a.client_secret.empty())
        error(line, p + ".auth.oauth2.client_secret", "is required with token_url");
    }
    return s;
  }

  Entity build_entity(const std::string& source, const std::string& name, const std::string& p,
                      int line) {
    Entity e{source, name, opt(p + ".id"), opt(p + ".updated_at")};
    auto& r = e.request;
    r.graphql_query = opt(p + ".graphql.query");
    r.rest_path = opt(p + ".rest.path");
    if (r.graphql_query.empty() == r.rest_path.empty())
      error(line, p, "needs exactly one of graphql.query or rest.path");
    r.api = r.graphql_query.empty() ? Request::Api::rest : Request::Api::graphql;
    r.pagination =
        opt(p + (r.api == Request::Api::graphql ? ".graphql.pagination" : ".rest.pagination"));
    r.records = opt(p + ".records");
    r.page_size = std::stoll(opt(p + ".page_size"));
    r.param_page = opt(p + ".rest.params.page");
    r.param_limit = opt(p + ".rest.params.limit");
    r.param_offset = opt(p + ".rest.params.offset");
    r.param_since = opt(p + ".rest.params.since");
    r.param_until = opt(p + ".rest.params.until");
    e.every = *parse_duration(opt(p + ".schedule.every"));
    e.full_every = *parse_duration(opt(p + ".schedule.full_every"));
    e.overlap = *parse_duration(opt(p + ".overlap"));
    build_table(e, p, line);
    return e;
  }

  bool given_under(const std::string& prefix) const {
    auto it = seen_paths_.lower_bound(prefix);
    if (it != seen_paths_.end() && it->rfind(prefix, 0) == 0) return true;
    auto m = seen_maps_.lower_bound(prefix);
    return m != seen_maps_.end() && m->rfind(prefix, 0) == 0;
  }

  int line_of(const std::string& path, int fallback) const {
    auto it = values_.find(path);
    return it == values_.end() || it->second.line == 0 ? fallback : it->second.line;
  }

  // A record path: dot-separated segments of [A-Za-z0-9_-]. Checked here because the
  // reconciler writes paths into SQL as jsonb path literals.
  static bool valid_record_path(std::string_view p) {
    if (p.empty() || p.front() == '.' || p.back() == '.') return false;
    char prev = '.';
    for (char ch : p) {
      bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                ch == '_' || ch == '-' || ch == '.';
      if (!ok || (ch == '.' && prev == '.')) return false;
      prev = ch;
    }
    return true;
  }

  void build_table(Entity& e, const std::string& p, int line) {
    std::string tp = p + ".table";
    if (!given_under(tp + ".")) return;
    Table& t = e.table;
    t.name = opt(tp + ".name").empty() ? e.name : opt(tp + ".name");
    if (!valid_identifier(t.name) || t.name.size() > 63 || t.name.rfind("stg_", 0) == 0 ||
        t.name.rfind("ingestd_", 0) == 0)
      error(line_of(tp + ".name", line), tp + ".name",
            fmt::format("'{}' is not a usable table name (lowercase letters, digits and _, at "
                        "most 63 bytes, not starting with stg_ or ingestd_)",
                        t.name));
    t.user_owned = opt(tp + ".user_owned") == "true";
    static const std::set<std::string, std::less<>> reserved = {
        "id",
        "raw_data",
        "is_placeholder",
        "content_hash",
        "source_updated_at",
        "fetched_at",
        "version",
        "created_at",
        "updated_at",
        "synced_at",
        "deleted_at",
        "ctid",
        "xmin",
        "xmax",
        "cmin",
        "cmax",
        "tableoid",
        "oid"};  // the last ones are system columns
    for (const auto& [cpath, cline] : instances_["sources.*.entities.*.table.columns.*"]) {
      std::string prefix = tp + ".columns.";
      if (cpath.rfind(prefix, 0) != 0) continue;
      Column c;
      c.name = cpath.substr(prefix.size());
      c.path = opt(cpath + ".path");
      c.type = opt(cpath + ".type");
      c.required = opt(cpath + ".required") == "true";
      c.references = opt(cpath + ".references");
      c.match_column = opt(cpath + ".match.column");
      c.match_path = opt(cpath + ".match.path");
      auto distance = opt(cpath + ".match.max_distance");
      c.match_distance = distance.empty() ? 2 : std::stoll(distance);
      if (reserved.count(c.name) || c.name.rfind("ingestd_", 0) == 0)
        error(cline, cpath, "this column name is reserved (every table has it already)");
      if (!c.path.empty() && !valid_record_path(c.path))
        error(line_of(cpath + ".path", cline), cpath + ".path",
              fmt::format("'{}' is not a record path (segments of letters, digits, _ and -, "
                          "separated by dots)",
                          c.path));
      if (!c.references.empty() && c.type != "text")
        error(line_of(cpath + ".type", cline), cpath + ".type",
              "a column with references holds an id and must be of type text");
      if (c.match_column.empty() != c.match_path.empty())
        error(cline, cpath + ".match", "needs both column and path");
      if (!c.match_column.empty() && c.references.empty())
        error(cline, cpath + ".match", "only a column with references can have a match rule");
      if (!c.match_column.empty() && !valid_identifier(c.match_column))
        error(line_of(cpath + ".match.column", cline), cpath + ".match.column",
              "is not a column name");
      if (!c.match_path.empty() && !valid_record_path(c.match_path))
        error(line_of(cpath + ".match.path", cline), cpath + ".match.path", "is not a record path");
      t.columns.push_back(std::move(c));
    }
    for (const auto& [ppath, pline] : instances_["sources.*.entities.*.table.placeholder.*"]) {
      std::string prefix = tp + ".placeholder.";
      if (ppath.rfind(prefix, 0) != 0) continue;
      std::string column = ppath.substr(prefix.size());
      if (!t.find_column(column))
        error(pline, ppath, fmt::format("'{}' is not a column of this table", column));
      t.placeholder[column] = opt(ppath);
    }
    if (!valid_record_path(e.id_path))
      error(line_of(p + ".id", line), p + ".id", "is not a record path");
    if (!valid_record_path(e.updated_at_path))
      error(line_of(p + ".updated_at", line), p + ".updated_at", "is not a record path");
  }

  // References name reconciled entities; tables are unique; no cycle between entities (a
  // self-reference is fine): parents can then always be applied first.
  int entity_line(const Entity& e) {
    std::string path = fmt::format("sources.{}.entities.{}", e.source, e.name);
    for (const auto& [p, l] : instances_["sources.*.entities.*"])
      if (p == path) return l;
    return 1;
  }

  void check_references(Config& c) {
    std::map<std::string, std::string> tables;  // table -> entity
    for (const auto& e : c.entities) {
      if (e.table.name.empty()) continue;
      std::string p = fmt::format("sources.{}.entities.{}.table", e.source, e.name);
      int eline = entity_line(e);
      if (auto [it, fresh] = tables.emplace(e.table.name, e.name); !fresh)
        error(line_of(p + ".name", eline), p + ".name",
              fmt::format("table '{}' is already used by entity '{}'", e.table.name, it->second));
      for (const auto& col : e.table.columns) {
        if (col.references.empty()) continue;
        std::string cp = p + ".columns." + col.name + ".references";
        const Entity* target = c.find_entity(col.references);
        if (!target || target->table.name.empty())
          error(line_of(cp, eline), cp,
                fmt::format("'{}' is not an entity with a table{}", col.references,
                            target ? " (add a table block to it)" : ""));
        else if (!col.match_column.empty() && !target->table.find_column(col.match_column))
          error(line_of(cp, eline), p + ".columns." + col.name + ".match.column",
                fmt::format("'{}' is not a column of table '{}'", col.match_column,
                            target->table.name));
      }
    }
    if (!errors_.empty()) return;
    // Depth-first search for a cycle through distinct entities.
    std::map<std::string, int> state;  // 0 new, 1 on the stack, 2 done
    std::function<bool(const Entity&, std::vector<std::string>&)> visit =
        [&](const Entity& e, std::vector<std::string>& stack) {
          state[e.name] = 1;
          stack.push_back(e.name);
          for (const auto& col : e.table.columns) {
            if (col.references.empty() || col.references == e.name) continue;
            const Entity* t = c.find_entity(col.references);
            if (state[t->name] == 1) {
              stack.push_back(t->name);
              return true;
            }
            if (state[t->name] == 0 && visit(*t, stack)) return true;
          }
          stack.pop_back();
          state[e.name] = 2;
          return false;
        };
    for (const auto& e : c.entities) {
      if (e.table.name.empty() || state[e.name] != 0) continue;
      std::vector<std::string> stack;
      if (visit(e, stack)) {
        std::string chain;
        for (const auto& n : stack) chain += (chain.empty() ? "" : " -> ") + n;
        error(entity_line(e), fmt::format("sources.{}.entities.{}.table.columns", e.source, e.name),
              fmt::format("references form a cycle ({}); break it by dropping one references "
                          "(keep the column as plain text)",
                          chain));
        return;
      }
    }
  }

  LoadResult finish() {
    LoadResult r;
    if (!errors_.empty()) {
      r.errors = std::move(errors_);
      return r;
    }
    Config c;
    c.origin = origin_;
    auto text = [&](const std::string& p) { return values_.at(p).text; };
    auto dur = [&](const std::string& p) { return *parse_duration(text(p)); };
    auto integer = [&](const std::string& p) { return std::stoll(text(p)); };
    c.database_url = text("database.url");
    c.database_connect_timeout = dur("database.connect_timeout");
    c.database_retry_initial = dur("database.retry_initial");
    c.database_retry_max = dur("database.retry_max");
    c.spool_dir = text("spool.dir");
    c.spool_archive_max_age = dur("spool.archive_max_age");
    c.spool_min_free = std::strtod(text("spool.min_free").c_str(), nullptr);
    c.staging_poll_interval = dur("staging.poll_interval");
    c.staging_workers = integer("staging.workers");
    c.staging_files_per_transaction = integer("staging.files_per_transaction");
    c.staging_batch_records = integer("staging.batch_records");
    c.staging_purge_after = dur("staging.purge_after");
    c.staging_purge_interval = dur("staging.purge_interval");
    c.staging_purge_batch = integer("staging.purge_batch");
    c.log_level = text("log.level");

    std::map<std::string, std::string> owner;  // entity name -> source
    for (const auto& [src_path, src_line] : instances_["sources.*"]) {
      std::string source = src_path.substr(std::string_view("sources.").size());
      c.sources.push_back(build_source(source, src_path, src_line));
      for (const auto& [ent_path, ent_line] : instances_["sources.*.entities.*"]) {
        std::string prefix = src_path + ".entities.";
        if (ent_path.rfind(prefix, 0) != 0) continue;
        std::string name = ent_path.substr(prefix.size());
        if (auto [it, fresh] = owner.emplace(name, source); !fresh) {
          error(ent_line, ent_path,
                fmt::format("entity '{}' is already declared by source '{}'", name, it->second));
          continue;
        }
        c.entities.push_back(build_entity(source, name, ent_path, ent_line));
      }
    }
    c.reconciler_workers = integer("reconciler.workers");
    c.reconciler_batch_size = integer("reconciler.batch_size");
    c.reconciler_max_attempts = integer("reconciler.max_attempts");
    c.reconciler_retry_initial = dur("reconciler.retry_initial");
    c.reconciler_retry_max = dur("reconciler.retry_max");
    c.reconciler_poll_interval = dur("reconciler.poll_interval");
    c.reconciler_max_delete_fraction =
        std::strtod(text("reconciler.max_delete_fraction").c_str(), nullptr);
    c.monitor_listen = opt("monitor.listen");
    c.fetcher_metrics_listen = opt("fetcher.metrics_listen");
    c.staging_metrics_listen = opt("staging.metrics_listen");
    c.reconciler_metrics_listen = opt("reconciler.metrics_listen");
    for (const char* key : {"monitor.listen", "fetcher.metrics_listen", "staging.metrics_listen",
                            "reconciler.metrics_listen"})
      if (!opt(key).empty() && !parse_listen(opt(key)))
        error(line_of(key, 1), key,
              fmt::format("'{}' is not host:port (an IP address or localhost, and a port "
                          "0-65535)",
                          opt(key)));
    c.monitor_poll_interval = dur("monitor.poll_interval");
    c.monitor_degraded_below = std::strtod(text("monitor.degraded_below").c_str(), nullptr);
    c.monitor_failing_below = std::strtod(text("monitor.failing_below").c_str(), nullptr);
    if (c.monitor_failing_below > c.monitor_degraded_below)
      error(line_of("monitor.failing_below", 1), "monitor.failing_below",
            "must not be above monitor.degraded_below");
    c.alerts_webhook_url = opt("monitor.alerts.webhook_url");
    c.alerts_min_interval = dur("monitor.alerts.min_interval");
    c.alerts_timeout = dur("monitor.alerts.timeout");
    check_references(c);
    c.fetcher_state_dir = opt("fetcher.state_dir").empty()
                              ? c.spool_dir / "state"
                              : std::filesystem::path(opt("fetcher.state_dir"));
    if (!errors_.empty()) {
      r.errors = std::move(errors_);
      return r;
    }
    for (const auto& [path, v] : values_) c.effective[path] = v.text;
    for (const auto& key : keys())
      if (key.secret)
        for (const auto& [parent, line] : parents_of(key.path))
          c.secret_paths.push_back(join(parent, key.path.substr(key.path.rfind('.') + 1)));
    r.config = std::move(c);
    return r;
  }

  std::string origin_;
  std::vector<std::string> errors_;
  std::map<std::string, Value> values_;
  std::map<std::string, std::vector<std::pair<std::string, int>>> instances_;
  std::set<std::string> seen_maps_;
  std::set<std::string> seen_paths_;
};

}  // namespace

const Source* Config::find_source(std::string_view name) const {
  for (const auto& s : sources)
    if (s.name == name) return &s;
  return nullptr;
}

const Column* Table::find_column(std::string_view column) const {
  for (const auto& c : columns)
    if (c.name == column) return &c;
  return nullptr;
}

std::vector<const Entity*> Config::reconciled_in_order() const {
  std::vector<const Entity*> out;
  std::set<std::string, std::less<>> placed;
  // check_references() refused cycles, so each pass places at least one entity.
  for (bool progress = true; progress;) {
    progress = false;
    for (const auto& e : entities) {
      if (e.table.name.empty() || placed.count(e.name)) continue;
      bool ready = true;
      for (const auto& col : e.table.columns)
        if (!col.references.empty() && col.references != e.name && !placed.count(col.references))
          ready = false;
      if (!ready) continue;
      out.push_back(&e);
      placed.insert(e.name);
      progress = true;
    }
  }
  return out;
}

const Entity* Config::find_entity(std::string_view name) const {
  for (const auto& e : entities)
    if (e.name == name) return &e;
  return nullptr;
}

std::optional<Listen> parse_listen(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  std::string host(text.substr(0, colon));
  std::string_view port = text.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
    return std::nullopt;
  long number = std::strtol(std::string(port).c_str(), nullptr, 10);
  if (number > 65535) return std::nullopt;
  in6_addr buf{};
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    if (inet_pton(AF_INET6, host.c_str(), &buf) != 1) return std::nullopt;
  } else if (host != "localhost" && inet_pton(AF_INET, host.c_str(), &buf) != 1) {
    return std::nullopt;
  }
  return Listen{host == "localhost" ? "127.0.0.1" : host, static_cast<std::uint16_t>(number)};
}

std::optional<Duration> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (text == "0") return Duration{0};
  std::int64_t total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    if (i == start || i - start > 12) return std::nullopt;
    std::int64_t n = std::stoll(std::string(text.substr(start, i - start)));
    std::size_t unit_start = i;
    while (i < text.size() && text[i] >= 'a' && text[i] <= 'z') ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    std::int64_t mult = 0, part = 0;
    if (unit == "ms")
      mult = 1;
    else if (unit == "s")
      mult = 1000;
    else if (unit == "m")
      mult = 60'000;
    else if (unit == "h")
      mult = 3'600'000;
    else if (unit == "d")
      mult = 86'400'000;
    else
      return std::nullopt;
    // 12 digits of days overflow 64 bits of milliseconds: saturate, and the key's range
    // check reports the value as out of range.
    if (__builtin_mul_overflow(n, mult, &part) || __builtin_add_overflow(total, part, &total))
      return Duration::max();
  }
  return Duration{total};
}

LoadResult load_string(std::string_view yaml, std::string_view origin) {
  return Loader(std::string(origin)).run(yaml);
}

LoadResult load_file(const std::filesystem::path& file) {
  auto text = read_file(file);
  if (!text) {
    LoadResult r;
    r.errors.push_back(fmt::format("{}: cannot read the configuration file", file.string()));
    return r;
  }
  return load_string(*text, file.string());
}

std::string render_effective(const Config& config) {
  std::string out = fmt::format("# effective configuration of {}\n", config.origin);
  for (const auto& [path, value] : config.effective) {
    bool secret = std::find(config.secret_paths.begin(), config.secret_paths.end(), path) !=
                  config.secret_paths.end();
    std::string shown = value;
    if (secret) shown = path == "database.url" ? dsn::redact(value) : "***";
    out += fmt::format("{}: {}\n", path, log::q(shown));
  }
  return out;
}

std::string render_reference() {
  std::string out =
      "# Configuration reference\n\n"
      "Generated from `core/config_keys.cpp` by `ingestd check-config --reference`; a test\n"
      "keeps this file equal to that output. `*` stands for a name you choose.\n\n"
      "Any value may use `${NAME}` to read an environment variable (`$$` is a literal `$`).\n"
      "A secret key `k` may be given as `k_file: /path` instead: the file's content, without\n"
      "its trailing newline, is the value (systemd `LoadCredential=` puts credentials in\n"
      "such files). Secrets are masked in `check-config` output and never logged.\n\n"
      "| key | type | default | range | description |\n|---|---|---|---|---|\n";
  auto type_name = [](const Key& k) -> std::string {
    switch (k.type) {
      case Type::string:
        return "string";
      case Type::integer:
        return "integer";
      case Type::number:
        return "number";
      case Type::duration:
        return "duration";
      case Type::boolean:
        return "boolean";
      case Type::choice:
        return fmt::format("one of {}", k.choices);
      case Type::dsn:
        return "libpq URI/conninfo";
      case Type::path:
        return "path";
      case Type::map:
        return "map of names";
    }
    return "";
  };
  for (const auto& k : keys()) {
    std::string range;
    if (k.min != 0 || k.max != 0)
      range = k.type == Type::duration ? fmt::format("{}ms – {}ms", k.min, k.max)
                                       : fmt::format("{} – {}", k.min, k.max);
    std::string def = k.required
                          ? "**required**"
                          : (k.default_value.empty() ? "" : fmt::format("`{}`", k.default_value));
    std::string flags = k.secret ? " Secret: masked, accepts `_file`." : "";
    out += fmt::format("| `{}` | {} | {} | {} | {}{} |\n", k.path, type_name(k), def, range,
                       k.description, flags);
  }
  return out;
}

}  // namespace ingestd::config
