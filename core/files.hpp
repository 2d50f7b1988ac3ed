// Reading a whole file: config, secret files, spool pages, checkpoints.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace ingestd {

// The file's bytes, or nullopt when it cannot be opened (missing, no permission).
[[nodiscard]] std::optional<std::string> read_file(const std::filesystem::path& path);

}  // namespace ingestd
