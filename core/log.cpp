#include "core/log.hpp"

#include "core/json_text.hpp"

#include <algorithm>
#include <mutex>
#include <vector>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace ingestd::log {
namespace {

std::mutex secrets_mutex;
std::vector<std::string>& secrets() {
  static std::vector<std::string> s;
  return s;
}

std::shared_ptr<spdlog::logger>& instance() {
  static std::shared_ptr<spdlog::logger> l = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto lg = std::make_shared<spdlog::logger>("ingestd", sink);
    lg->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        "ts=%Y-%m-%dT%H:%M:%S.%eZ level=%l %v", spdlog::pattern_time_type::utc));
    lg->flush_on(spdlog::level::trace);
    return lg;
  }();
  return l;
}

// "postgresql://user:secret@host" -> "postgresql://user:***@host", for URLs that were never
// registered as secrets (e.g. echoed back inside a library's error message).
std::string scrub_url_passwords(std::string text) {
  std::size_t pos = 0;
  while ((pos = text.find("://", pos)) != std::string::npos) {
    std::size_t start = pos + 3;
    std::size_t at = text.find('@', start);
    std::size_t end = text.find_first_of(" /\"'\n", start);
    if (at == std::string::npos || (end != std::string::npos && end < at)) {
      pos = start;
      continue;
    }
    std::size_t colon = text.find(':', start);
    if (colon != std::string::npos && colon < at) text.replace(colon + 1, at - colon - 1, "***");
    pos = start;
  }
  return text;
}

}  // namespace

void init(std::string_view level, spdlog::sink_ptr sink) {
  auto& lg = instance();
  if (sink) {
    auto fresh = std::make_shared<spdlog::logger>("ingestd", sink);
    fresh->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        "ts=%Y-%m-%dT%H:%M:%S.%eZ level=%l %v", spdlog::pattern_time_type::utc));
    fresh->flush_on(spdlog::level::trace);
    lg = fresh;
  }
  lg->set_level(spdlog::level::from_str(std::string(level)));
}

void add_secret(std::string_view secret) {
  // Very short values would redact half of every line; config rejects them as secrets anyway.
  if (secret.size() < 4) return;
  std::lock_guard lock(secrets_mutex);
  auto& s = secrets();
  if (std::find(s.begin(), s.end(), secret) == s.end()) s.emplace_back(secret);
}

std::string redact(std::string_view text) {
  std::string out(text);
  {
    std::lock_guard lock(secrets_mutex);
    for (const auto& secret : secrets()) {
      std::size_t pos = 0;
      while ((pos = out.find(secret, pos)) != std::string::npos) {
        out.replace(pos, secret.size(), "***");
        pos += 3;
      }
    }
  }
  return scrub_url_passwords(std::move(out));
}

std::string q(std::string_view value) {
  bool plain = !value.empty() && std::none_of(value.begin(), value.end(), [](char c) {
    return c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20;
  });
  // Quoted values use JSON string escaping: one line, and any log parser can undo it.
  return plain ? std::string(value) : json_quote(value);
}

spdlog::logger& logger() {
  return *instance();
}

namespace detail {
void emit(spdlog::level::level_enum level, std::string_view event, std::string_view fields) {
  std::string line =
      fields.empty() ? fmt::format("event={}", event) : fmt::format("event={} {}", event, fields);
  logger().log(level, "{}", redact(line));
}
}  // namespace detail

}  // namespace ingestd::log
