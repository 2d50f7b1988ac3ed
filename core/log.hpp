// One line per event, key=value, secrets never printed.
//
//   log::info("stager.file_loaded", "entity={} file={} records={}", e, log::q(f), n);
//
// prints `ts=2026-11-26T11:06:34.123Z level=info event=stager.file_loaded entity=...`.
// Every message passes through redact() before it reaches a sink, so a secret registered
// with add_secret() (config does this for every secret it loads) cannot leak even through
// an error message that quotes it.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace ingestd::log {

// Sets the level ("trace".."error") and, optionally, a sink (tests pass an ostream sink).
void init(std::string_view level, spdlog::sink_ptr sink = nullptr);

// Registers a value that must never appear in a log line; it is printed as ***.
void add_secret(std::string_view secret);
[[nodiscard]] std::string redact(std::string_view text);

// Quotes a value for key=value output when it holds spaces, quotes, '=' or control
// characters; newlines become \n so every event stays on one line.
[[nodiscard]] std::string q(std::string_view value);

[[nodiscard]] spdlog::logger& logger();

namespace detail {
void emit(spdlog::level::level_enum level, std::string_view event, std::string_view fields);
}

template <class... Args>
void write(spdlog::level::level_enum level, std::string_view event,
           fmt::format_string<Args...> fields, Args&&... args) {
  if (!logger().should_log(level)) return;
  detail::emit(level, event, fmt::format(fields, std::forward<Args>(args)...));
}

#define INGESTD_LOG_LEVEL_FN(name, lvl)                                                   \
  template <class... Args>                                                                \
  void name(std::string_view event, fmt::format_string<Args...> fields, Args&&... args) { \
    write(spdlog::level::lvl, event, fields, std::forward<Args>(args)...);                \
  }                                                                                       \
  inline void name(std::string_view event) {                                              \
    write(spdlog::level::lvl, event, "");                                                 \
  }
INGESTD_LOG_LEVEL_FN(debug, debug)
INGESTD_LOG_LEVEL_FN(info, info)
INGESTD_LOG_LEVEL_FN(warn, warn)
INGESTD_LOG_LEVEL_FN(error, err)
#undef INGESTD_LOG_LEVEL_FN

}  // namespace ingestd::log
