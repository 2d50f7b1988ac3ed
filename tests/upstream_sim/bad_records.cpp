#include "bad_records.hpp"

#include <fmt/format.h>

#include "text.hpp"

namespace upstream_sim::bad {

std::string shown_id(const Record& r) {
  if (r.bad == "missing_id") return "";
  if (r.bad == "duplicate_id") return r.twin;
  return r.id;
}

std::string render(const Record& r) {
  const std::string& kind = r.bad;
  std::string id = shown_id(r);
  std::string out = "{";
  if (!id.empty()) out += "\"id\":" + json_quote(id);
  bool first_field = true;
  for (const auto& f : r.fields) {
    std::string value = f.json;
    if (first_field) {
      if (kind == "wrong_type") {
        value = "{\"unexpected\":" + f.json + "}";
      } else if (kind == "huge_string") {
        std::string big;
        big.reserve(1 << 20);
        while (big.size() < (1u << 20)) big += "Lorem ipsum dolor sit amet, Flügel 日本 ";
        value = json_quote(big);
      } else if (kind == "invalid_utf8") {
        // A lone continuation byte, an overlong '/', a truncated sequence, 0xFF: none is UTF-8.
        value = "\"broken \x80 \xc0\xaf \xe6\x97 \xff end\"";
      } else if (kind == "nul_char") {
        value = R"("before\u0000after")";
      } else if (kind == "sql_string") {
        value = json_quote(R"(Robert'); DROP TABLE clients; -- $$ \' OR '1'='1 /* E'\x00' */)");
      } else if (kind == "duplicate_id") {
        value = json_quote(fmt::format("duplicate of {} (really {})", r.twin, r.id));
      }
    }
    first_field = false;
    if (out.size() > 1) out += ',';
    out += json_quote(f.name) + ':' + value;
  }
  if (kind == "deep_nesting") {
    out += ",\"nested\":";
    out.append(kDepth, '[');
    out += "\"bottom\"";
    out.append(kDepth, ']');
  }
  if (kind == "huge_number") out += ",\"amount\":1e999999";
  out += ",\"updatedAt\":";
  out += kind == "bad_time" ? std::string(R"("sometime last week")")
                            : json_quote(format_time(r.updated_at));
  return out + '}';
}

}  // namespace upstream_sim::bad
