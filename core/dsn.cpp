#include "core/dsn.hpp"

namespace ingestd {

bool valid_identifier(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  if (!(name[0] == '_' || (name[0] >= 'a' && name[0] <= 'z'))) return false;
  for (char c : name)
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  return true;
}

namespace dsn {
namespace {

bool is_uri(std::string_view s) {
  return s.rfind("postgresql://", 0) == 0 || s.rfind("postgres://", 0) == 0;
}

std::string percent_decode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// A span [begin, end) of the input that holds a password.
struct Span {
  std::size_t begin, end;
};

std::vector<Span> uri_password_spans(std::string_view s) {
  std::vector<Span> spans;
  std::size_t start = s.find("://") + 3;
  std::size_t authority_end = s.find_first_of("/?", start);
  if (authority_end == std::string_view::npos) authority_end = s.size();
  std::size_t at = s.rfind('@', authority_end);
  if (at != std::string_view::npos && at >= start) {
    std::size_t colon = s.find(':', start);
    if (colon != std::string_view::npos && colon < at) spans.push_back({colon + 1, at});
  }
  std::size_t query = s.find('?', start);
  while (query != std::string_view::npos && query < s.size()) {
    std::size_t key = query + 1;
    std::size_t amp = s.find('&', key);
    std::size_t end = amp == std::string_view::npos ? s.size() : amp;
    if (s.substr(key, 9) == "password=") spans.push_back({key + 9, end});
    query = amp;
  }
  return spans;
}

std::vector<Span> keyword_password_spans(std::string_view s) {
  std::vector<Span> spans;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    std::size_t eq = s.find('=', i);
    if (eq == std::string_view::npos) break;
    std::string_view key = s.substr(i, eq - i);
    while (!key.empty() && key.back() == ' ') key.remove_suffix(1);
    std::size_t v = eq + 1;
    while (v < s.size() && s[v] == ' ') ++v;
    std::size_t end = v;
    if (v < s.size() && s[v] == '\'') {
      end = v + 1;
      while (end < s.size() && s[end] != '\'') end += (s[end] == '\\') ? 2 : 1;
      end = std::min(end + 1, s.size());
    } else {
      while (end < s.size() && s[end] != ' ') ++end;
    }
    if (key == "password") spans.push_back({v, end});
    i = end;
  }
  return spans;
}

std::vector<Span> spans(std::string_view s) {
  return is_uri(s) ? uri_password_spans(s) : keyword_password_spans(s);
}

std::string unquote(std::string_view v) {
  if (v.size() < 2 || v.front() != '\'') return std::string(v);
  std::string out;
  for (std::size_t i = 1; i + 1 < v.size(); ++i) {
    if (v[i] == '\\' && i + 2 < v.size()) ++i;
    out += v[i];
  }
  return out;
}

}  // namespace

std::vector<std::string> passwords(std::string_view conninfo) {
  std::vector<std::string> out;
  bool uri = is_uri(conninfo);
  for (auto [b, e] : spans(conninfo)) {
    std::string_view raw = conninfo.substr(b, e - b);
    if (raw.empty()) continue;
    if (uri) {
      out.emplace_back(raw);
      if (auto decoded = percent_decode(raw); decoded != raw) out.push_back(decoded);
    } else {
      out.push_back(unquote(raw));
    }
  }
  return out;
}

std::string redact(std::string_view conninfo) {
  std::string out;
  std::size_t pos = 0;
  for (auto [b, e] : spans(conninfo)) {
    out.append(conninfo.substr(pos, b - pos));
    out += "***";
    pos = e;
  }
  out.append(conninfo.substr(pos));
  return out;
}

}  // namespace dsn
}  // namespace ingestd
