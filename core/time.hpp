// RFC 3339 timestamps, the only time format that crosses a stage boundary.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace ingestd {

using SysTime = std::chrono::system_clock::time_point;

// "2026-11-26T11:06:34.123456Z" (always UTC, microseconds).
[[nodiscard]] std::string format_rfc3339(SysTime t);
// Accepts "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)"; a space may replace the T.
[[nodiscard]] std::optional<SysTime> parse_rfc3339(std::string_view text);

}  // namespace ingestd
