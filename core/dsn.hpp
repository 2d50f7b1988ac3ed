// PostgreSQL connection strings without libpq (the fetcher must not link it): the password
// they carry, and the same string with the password masked for printing.
// Both forms are understood: URIs (postgresql://user:pw@host/db?password=pw) and keyword
// strings (host=h password='p w').
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ingestd::dsn {

// Every password the string carries (decoded and, for URIs, as written).
[[nodiscard]] std::vector<std::string> passwords(std::string_view conninfo);
// The string with each password replaced by ***.
[[nodiscard]] std::string redact(std::string_view conninfo);

}  // namespace ingestd::dsn

namespace ingestd {
// Table and column names from the config: [a-z_][a-z0-9_]*, at most 63 bytes.
[[nodiscard]] bool valid_identifier(std::string_view name);
}  // namespace ingestd
